// reef_common.cuh: what every reefd kernel body and generated entry point shares.
//
// wrappers.py inlines this file at the top of every generated module (NVRTC sees
// no system headers, so only builtins are used here). Bodies may also
// `#include "reef_common.cuh"`; the guard makes that harmless.
#ifndef REEF_COMMON_CUH
#define REEF_COMMON_CUH

// Every entry point runs with blockDim.x == REEF_CTA_THREADS, so any two bodies
// can share a padded launch.
#define REEF_CTA_THREADS 256

// Values of an `act` param: the index of its choice in reefd.kernels.act.ACTS.
// The order is ABI (tests/unit/test_elementwise_ops.py checks these against it).
#define REEF_ACT_NONE 0
#define REEF_ACT_RELU 1
#define REEF_ACT_RELU6 2
#define REEF_ACT_GELU 3
#define REEF_ACT_GELU_TANH 4
#define REEF_ACT_SILU 5
#define REEF_ACT_SIGMOID 6
#define REEF_ACT_TANH 7
#define REEF_ACT_HARDSWISH 8
#define REEF_ACT_COUNT 9

// min(max(v, lo), hi) as torch.clamp / hardtanh compute it: NaN stays NaN
// (fminf/fmaxf would drop it), -0.0 inside the range stays -0.0, and lo > hi
// gives hi.
__device__ __forceinline__ float reef_clamp(float v, float lo, float hi) {
  const float r = v < lo ? lo : v;
  return r > hi ? hi : r;
}

// The activation epilogue, in torch's own formulas (its CUDA kernels, float
// opmath), so NaN and inf come out as in torch:
//   relu       v < 0 ? 0 : v (keeps NaN, as torch.relu; fmaxf would not)
//   relu6      reef_clamp(v, 0, 6) (hardtanh(0, 6))
//   gelu       v / 2 * (1 + erf(v / sqrt(2)))  (erf form; -inf gives NaN)
//   gelu_tanh  v / 2 * (1 + tanh(sqrt(2/pi) * (v + 0.044715 v^3)))
//   silu       v / (1 + exp(-v)): exp overflows to inf for v << 0, giving -0,
//              and underflows to 0 for v >> 0, giving v; no NaN for finite v
//   sigmoid    1 / (1 + exp(-v)), the same way: 0 or 1 at the ends
//   tanh       tanhf
//   hardswish  v * clamp(v + 3, 0, 6) / 6 (NaN stays NaN through the product)
__device__ __forceinline__ float reef_act(float v, int act) {
  switch (act) {
    case REEF_ACT_RELU:
      return v < 0.0f ? 0.0f : v;
    case REEF_ACT_RELU6:
      return reef_clamp(v, 0.0f, 6.0f);
    case REEF_ACT_GELU:
      return v * 0.5f * (1.0f + erff(v * 0.707106781186547524f));
    case REEF_ACT_GELU_TANH: {
      const float inner = 0.797884560802865356f * (v + 0.044715f * (v * v * v));
      return 0.5f * v * (1.0f + tanhf(inner));
    }
    case REEF_ACT_SILU:
      return v / (1.0f + expf(-v));
    case REEF_ACT_SIGMOID:
      return 1.0f / (1.0f + expf(-v));
    case REEF_ACT_TANH:
      return tanhf(v);
    case REEF_ACT_HARDSWISH:
      return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    default:  // REEF_ACT_NONE
      return v;
  }
}

// ceil(a / b) for a >= 0, b > 0.
__device__ __host__ __forceinline__ int reef_ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

__device__ __forceinline__ int reef_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int reef_max(int a, int b) { return a > b ? a : b; }

// --- warp and CTA reductions ----------------------------------------------------
//
// Each combines in one fixed order, so a result depends only on the values, never
// on the CTA or SM that computes it (what makes the preemptible and padded forms
// bit for bit the plain form):
//   reef_warp_sum<W> / reef_warp_max<W>   a butterfly over each group of W
//       consecutive lanes (W a power of two <= 32, default the whole warp): lane
//       l combines with lane l ^ m for m = W / 2, ..., 2, 1, in that order; every
//       lane of the group ends with the group's result. All 32 lanes must call it.
//   reef_block_sum / reef_block_max   the warp butterfly, then every thread
//       combines the REEF_CTA_WARPS warp results in warp order, left to right:
//       ((red[0] op red[1]) op red[2]) ... op red[7].
// Shared memory of the block reductions: `red` points at REEF_CTA_WARPS (8)
// floats; red[w] holds warp w's result, written by its lane 0. A barrier
// publishes them; a trailing barrier frees `red`, so the next reduction may reuse
// it at once. All REEF_CTA_THREADS threads must call them (block-uniform control
// flow); every thread gets the result. Max is fmaxf (a NaN operand is dropped).
// reef_warp_reduce / reef_block_reduce are the same with any combining `op`
// (op(running, other): the running value is always the left operand).
#define REEF_CTA_WARPS (REEF_CTA_THREADS / 32)

// The combining operations of the reductions.
struct reef_sum_op {
  __device__ __forceinline__ float operator()(float a, float b) const {
    return a + b;
  }
};
struct reef_max_op {
  __device__ __forceinline__ float operator()(float a, float b) const {
    return fmaxf(a, b);
  }
};

template <int W, class Op>
__device__ __forceinline__ float reef_warp_reduce(float v, Op op) {
#pragma unroll
  for (int m = W / 2; m >= 1; m >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}

template <class Op>
__device__ __forceinline__ float reef_block_reduce(float v, float* red, Op op) {
  v = reef_warp_reduce<32>(v, op);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = red[0];
#pragma unroll
  for (int w = 1; w < REEF_CTA_WARPS; ++w) r = op(r, red[w]);
  __syncthreads();
  return r;
}

template <int W = 32>
__device__ __forceinline__ float reef_warp_sum(float v) {
  return reef_warp_reduce<W>(v, reef_sum_op());
}

template <int W = 32>
__device__ __forceinline__ float reef_warp_max(float v) {
  return reef_warp_reduce<W>(v, reef_max_op());
}

__device__ __forceinline__ float reef_block_sum(float v, float* red) {
  return reef_block_reduce(v, red, reef_sum_op());
}

__device__ __forceinline__ float reef_block_max(float v, float* red) {
  return reef_block_reduce(v, red, reef_max_op());
}

#endif  // REEF_COMMON_CUH
