// softmax.cu: y = softmax(x * scale + mask) over the last dim of [rows, cols],
// float32.
//
// The input of row r, column c is v = x[r][c] * scale + mask[r / mask_group][c]
// (the mask term only when mask is bound, i.e. non-null), rounded as torch
// rounds `x * scale + mask`: the product, then the sum (__fmul_rn / __fadd_rn,
// never contracted to an fma). scale = 1 is exact, so the unscaled, unmasked
// softmax is unchanged. A -inf mask entry drops its column; a row whose inputs
// are all -inf gives NaN, as in torch.
// Numerically stable (exp(v - rowmax) / sum), y may alias x (every element is
// read before any of its row is written, or read and written by one thread).
//   softmax_warp_body<VPL>   cols <= 32 * VPL (<= 1024): one warp per row, 8 rows
//                            per virtual block, the row held in registers.
//   softmax_block_body<VPT>  cols <= 256 * VPT: one row per virtual block, held
//                            in registers; block reductions through smem.
//   softmax_online_body      longer rows: one row per virtual block; one pass
//                            for (max, sum) with rescaling, one pass to write.
// smem: 16 floats for the block variants, none for the warp variant. The warp
// and block max / sum are reef_common.cuh's (fixed butterfly and warp orders).
#ifndef REEF_SOFTMAX_CU
#define REEF_SOFTMAX_CU

#include "reef_common.cuh"

#define SOFTMAX_NEG_INF __int_as_float(0xff800000)

// The mask row that row `row` adds, or null when no mask is bound.
__device__ __forceinline__ const float* sm_mask_row(const softmax_args& a,
                                                    long long row) {
  return a.mask ? a.mask + (row / a.mask_group) * a.cols : nullptr;
}

// Column c's input x * scale (+ mask), with torch's two roundings.
__device__ __forceinline__ float sm_in(const float* xr, const float* mr, float scale,
                                       int c) {
  const float v = __fmul_rn(xr[c], scale);
  return mr ? __fadd_rn(v, mr[c]) : v;
}

template <int VPL>
__device__ void softmax_warp_body(int vb, const softmax_args& a, char* smem) {
  const int cols = a.cols;
  const int lane = threadIdx.x & 31;
  const long long row = (long long)vb * 8 + (threadIdx.x >> 5);
  if (row < a.rows) {  // warp-uniform; no block barrier below
    const float* xr = a.x + row * cols;
    const float* mr = sm_mask_row(a, row);
    float* yr = a.y + row * cols;
    float v[VPL];
    float m = SOFTMAX_NEG_INF;
#pragma unroll
    for (int j = 0; j < VPL; ++j) {
      const int c = lane + 32 * j;
      v[j] = c < cols ? sm_in(xr, mr, a.scale, c) : SOFTMAX_NEG_INF;
      m = fmaxf(m, v[j]);
    }
    m = reef_warp_max(m);
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < VPL; ++j) {
      const int c = lane + 32 * j;
      v[j] = c < cols ? expf(v[j] - m) : 0.0f;
      s += v[j];
    }
    s = reef_warp_sum(s);
#pragma unroll
    for (int j = 0; j < VPL; ++j) {
      const int c = lane + 32 * j;
      if (c < cols) yr[c] = v[j] / s;
    }
  }
}

template <int VPT>
__device__ void softmax_block_body(int vb, const softmax_args& a, char* smem) {
  if (vb >= a.rows) return;  // block-uniform
  float* red = reinterpret_cast<float*>(smem);
  const int cols = a.cols;
  const int tid = threadIdx.x;
  const float* xr = a.x + (long long)vb * cols;
  const float* mr = sm_mask_row(a, vb);
  float* yr = a.y + (long long)vb * cols;
  float v[VPT];
  float m = SOFTMAX_NEG_INF;
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    const int c = tid + 256 * j;
    v[j] = c < cols ? sm_in(xr, mr, a.scale, c) : SOFTMAX_NEG_INF;
    m = fmaxf(m, v[j]);
  }
  m = reef_block_max(m, red);
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    const int c = tid + 256 * j;
    v[j] = c < cols ? expf(v[j] - m) : 0.0f;
    s += v[j];
  }
  s = reef_block_sum(s, red);
#pragma unroll
  for (int j = 0; j < VPT; ++j) {
    const int c = tid + 256 * j;
    if (c < cols) yr[c] = v[j] / s;
  }
}

// Merge a running (max, sum of exp(x - max)) pair into (m, s).
__device__ __forceinline__ void sm_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  const float a = s == 0.0f ? 0.0f : s * expf(m - mn);
  const float b = s2 == 0.0f ? 0.0f : s2 * expf(m2 - mn);
  m = mn;
  s = a + b;
}

__device__ void softmax_online_body(int vb, const softmax_args& a, char* smem) {
  if (vb >= a.rows) return;  // block-uniform
  float* red = reinterpret_cast<float*>(smem);  // [8] max, [8] sum
  const int cols = a.cols;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float* xr = a.x + (long long)vb * cols;
  const float* mr = sm_mask_row(a, vb);
  float* yr = a.y + (long long)vb * cols;
  const float neg_inf = SOFTMAX_NEG_INF;
  float m = neg_inf, s = 0.0f;
  for (int c = tid; c < cols; c += 256) {
    const float v = sm_in(xr, mr, a.scale, c);
    if (v > m) {
      s = s * expf(m - v) + 1.0f;  // expf(-inf) = 0 for the first element
      m = v;
    } else if (v != neg_inf) {
      s += expf(v - m);  // NaN stays NaN, as in torch
    }
  }
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    sm_merge(m, s, m2, s2);
  }
  if (lane == 0) {
    red[warp] = m;
    red[8 + warp] = s;
  }
  __syncthreads();
  m = red[0];
  s = red[8];
#pragma unroll
  for (int w = 1; w < 8; ++w) sm_merge(m, s, red[w], red[8 + w]);
  __syncthreads();  // red is free again
  for (int c = tid; c < cols; c += 256)
    yr[c] = expf(sm_in(xr, mr, a.scale, c) - m) / s;
}

#endif  // REEF_SOFTMAX_CU
