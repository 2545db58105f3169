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

// Values of an `act` param: the index of its choice in ("none", "relu").
#define REEF_ACT_NONE 0
#define REEF_ACT_RELU 1

// The activation epilogue: v unchanged, or max(v, 0) for REEF_ACT_RELU.
__device__ __forceinline__ float reef_act(float v, int act) {
  return act == REEF_ACT_RELU ? fmaxf(v, 0.0f) : v;
}

// ceil(a / b) for a >= 0, b > 0.
__device__ __host__ __forceinline__ int reef_ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

__device__ __forceinline__ int reef_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int reef_max(int a, int b) { return a > b ? a : b; }

#endif  // REEF_COMMON_CUH
