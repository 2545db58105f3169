// reduce.cu: mean over the middle dim of x viewed as [outer, red, inner], float32.
//
//   mean_rows_body<TPR>    inner == 1: row i is x[i * red .. i * red + red - 1].
//                          TPR (8, 32 or 256) threads per row, 256 / TPR rows per
//                          virtual block: threads g * TPR .. g * TPR + TPR - 1
//                          reduce row vb * (256 / TPR) + g. Thread l of a row
//                          sums columns l, l + TPR, ... in order, then a fixed
//                          xor-shuffle tree adds the TPR sums (TPR = 256: then
//                          the 8 warp sums in warp order, through 8 floats of
//                          smem).
//   mean_cols_body<SPLIT>  inner > 1: output o = i * inner + j sums x[i][r][j]
//                          over r. 256 / SPLIT consecutive outputs per virtual
//                          block, one per thread of a group, so a warp's loads
//                          of one r are consecutive (coalesced). SPLIT = 1: each
//                          thread sums r = 0, 1, ... SPLIT = 8: warp w sums r =
//                          w, w + 8, ... for 32 outputs; the 8 partial sums are
//                          then added in warp order through smem (256 floats).
// y = sum / red (IEEE division). The summation order of an output depends only
// on the shape, never on the CTA, so results are deterministic. NaN and inf
// propagate as in torch. Offsets are 64-bit: outer * red * inner may pass 2^31.
#ifndef REEF_REDUCE_CU
#define REEF_REDUCE_CU

#include "reef_common.cuh"

// Sum over groups of TPR consecutive threads (TPR 8, 32 or 256: a power of two
// <= 32, or the whole CTA); every thread of a group gets its group's sum. All 256
// threads must call it. TPR = 256 is reef_block_sum (`red`: 8 floats of smem).
template <int TPR>
__device__ __forceinline__ float rd_group_sum(float v, float* red) {
  if (TPR > 32) return reef_block_sum(v, red);
  return reef_warp_sum<(TPR < 32 ? TPR : 32)>(v);
}

template <int TPR>
__device__ void mean_rows_body(int vb, const mean_args& a, char* smem) {
  constexpr int ROWS = REEF_CTA_THREADS / TPR;
  const int lane = threadIdx.x % TPR;
  const long long row = (long long)vb * ROWS + threadIdx.x / TPR;
  const int red = a.red;
  float s = 0.0f;
  if (row < a.outer) {
    const float* xr = a.x + row * red;
    for (int c = lane; c < red; c += TPR) s += __ldg(xr + c);
  }
  s = rd_group_sum<TPR>(s, reinterpret_cast<float*>(smem));
  if (lane == 0 && row < a.outer) a.y[row] = s / (float)red;
}

template <int SPLIT>
__device__ void mean_cols_body(int vb, const mean_args& a, char* smem) {
  constexpr int COLS = REEF_CTA_THREADS / SPLIT;
  const int part = threadIdx.x / COLS;
  const long long o = (long long)vb * COLS + threadIdx.x % COLS;
  const long long inner = a.inner;
  const bool live = o < (long long)a.outer * inner;
  float s = 0.0f;
  if (live) {
    const long long i = o / inner, j = o - i * inner;
    const float* xp = a.x + (i * a.red + part) * inner + j;
    for (int r = part; r < a.red; r += SPLIT, xp += SPLIT * inner) s += __ldg(xp);
  }
  if (SPLIT > 1) {  // partial sums [SPLIT][COLS]: thread t's is at t
    float* parts = reinterpret_cast<float*>(smem);
    parts[threadIdx.x] = s;
    __syncthreads();
    if (part == 0) {
#pragma unroll
      for (int q = 1; q < SPLIT; ++q) s += parts[q * COLS + threadIdx.x];
    }
    __syncthreads();
  }
  if (part == 0 && live) a.y[o] = s / (float)a.red;
}

#endif  // REEF_REDUCE_CU
