// norm.cu: layer_norm over the last dim of [rows, cols], float32.
//
// torch semantics, two-pass in float32: mean = sum(x) / cols, then
// var = sum((x - mean)^2) / cols (biased), rstd = 1 / sqrtf(var + eps) (IEEE
// sqrt and division: no fast math), y = (x - mean) * rstd * weight + bias, the
// weight and bias terms only where bound (null pointer = unbound). NaN or inf in
// a row makes that row NaN, as in torch.
//   layer_norm_warp_body<VPL>  cols <= 32 * VPL (<= 1024): one warp per row,
//                              8 rows per virtual block (warp w: row 8 vb + w),
//                              lane l holds columns l, l + 32, ... in registers.
//   layer_norm_block_body      longer rows: one row per virtual block; thread t
//                              walks columns t, t + 256, ...; three passes over
//                              the row (sum, squared deviations, write), block
//                              reductions through smem (8 floats).
// Sums run in a fixed order (per-thread sequential, then reef_warp_sum's
// butterfly, then reef_block_sum's warps 0..7; reef_common.cuh), so a row's
// result does not depend on the CTA that runs it.
// y may alias x: the warp body reads its whole row before writing any of it; the
// block body writes only after the last reduction's barrier, each element by
// the thread that reads it.
#ifndef REEF_NORM_CU
#define REEF_NORM_CU

#include "reef_common.cuh"

#define LN_WARP_ROWS 8

__device__ __forceinline__ float ln_rstd(float sq_sum, int cols, float eps) {
  return 1.0f / sqrtf(sq_sum / (float)cols + eps);
}

// (v - mean) * rstd, then the weight and bias of column c where bound.
__device__ __forceinline__ float ln_affine(const layer_norm_args& a, float v,
                                          float mean, float rstd, int c) {
  float r = (v - mean) * rstd;
  if (a.weight) r *= a.weight[c];
  if (a.bias) r += a.bias[c];
  return r;
}

template <int VPL>
__device__ void layer_norm_warp_body(int vb, const layer_norm_args& a, char* smem) {
  const int cols = a.cols;
  const int lane = threadIdx.x & 31;
  const long long row = (long long)vb * LN_WARP_ROWS + (threadIdx.x >> 5);
  if (row < a.rows) {  // warp-uniform; no block barrier below
    const float* xr = a.x + row * cols;
    float* yr = a.y + row * cols;
    float v[VPL];
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < VPL; ++j) {
      const int c = lane + 32 * j;
      v[j] = c < cols ? xr[c] : 0.0f;
      s += v[j];
    }
    const float mean = reef_warp_sum(s) / (float)cols;
    float q = 0.0f;
#pragma unroll
    for (int j = 0; j < VPL; ++j) {
      const float d = v[j] - mean;
      if (lane + 32 * j < cols) q += d * d;
    }
    const float rstd = ln_rstd(reef_warp_sum(q), cols, a.eps);
#pragma unroll
    for (int j = 0; j < VPL; ++j) {
      const int c = lane + 32 * j;
      if (c < cols) yr[c] = ln_affine(a, v[j], mean, rstd, c);
    }
  }
}

__device__ void layer_norm_block_body(int vb, const layer_norm_args& a, char* smem) {
  if (vb >= a.rows) return;  // block-uniform
  float* red = reinterpret_cast<float*>(smem);
  const int cols = a.cols;
  const float* xr = a.x + (long long)vb * cols;
  float* yr = a.y + (long long)vb * cols;
  float s = 0.0f;
  for (int c = threadIdx.x; c < cols; c += REEF_CTA_THREADS) s += xr[c];
  const float mean = reef_block_sum(s, red) / (float)cols;
  float q = 0.0f;
  for (int c = threadIdx.x; c < cols; c += REEF_CTA_THREADS) {
    const float d = xr[c] - mean;
    q += d * d;
  }
  const float rstd = ln_rstd(reef_block_sum(q, red), cols, a.eps);
  for (int c = threadIdx.x; c < cols; c += REEF_CTA_THREADS)
    yr[c] = ln_affine(a, xr[c], mean, rstd, c);
}

#endif  // REEF_NORM_CU
