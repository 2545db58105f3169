// elementwise.cu: relu, add (+ act) and copy over flat float32 vectors.
//
// One virtual block covers 1024 elements (the spec's elems_per_virtual_block):
// thread t handles elements vb * 1024 + 4 t .. + 3, as one 16-byte access when
// every pointer is 16-byte aligned and the four are in range, else as scalars.
// relu and add may run in place (y aliasing an input): each element is read and
// then written by the same thread, so plain (coherent) loads are used.
#ifndef REEF_ELEMENTWISE_CU
#define REEF_ELEMENTWISE_CU

#include "reef_common.cuh"

#define EW_PER_VB 1024

__device__ __forceinline__ bool ew_aligned(const void* p) {
  return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

__device__ __forceinline__ float4 ew_act4(float4 v, int act) {
  return make_float4(reef_act(v.x, act), reef_act(v.y, act), reef_act(v.z, act),
                     reef_act(v.w, act));
}

// max(v, 0) that keeps NaN, as torch.relu does (fmaxf would return 0).
__device__ __forceinline__ float ew_relu(float v) { return v < 0.0f ? 0.0f : v; }

__device__ void relu_body(int vb, const relu_args& a, char* smem) {
  const long long i = (long long)vb * EW_PER_VB + threadIdx.x * 4;
  const long long n = a.numel;
  if (i + 4 <= n && ew_aligned(a.x) && ew_aligned(a.y)) {
    const float4 v = *reinterpret_cast<const float4*>(a.x + i);
    *reinterpret_cast<float4*>(a.y + i) =
        make_float4(ew_relu(v.x), ew_relu(v.y), ew_relu(v.z), ew_relu(v.w));
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j < n) a.y[i + j] = ew_relu(a.x[i + j]);
  }
}

__device__ void add_body(int vb, const add_args& a, char* smem) {
  const long long i = (long long)vb * EW_PER_VB + threadIdx.x * 4;
  const long long n = a.numel;
  const int act = a.act;
  if (i + 4 <= n && ew_aligned(a.a) && ew_aligned(a.b) && ew_aligned(a.y)) {
    const float4 u = *reinterpret_cast<const float4*>(a.a + i);
    const float4 v = *reinterpret_cast<const float4*>(a.b + i);
    *reinterpret_cast<float4*>(a.y + i) =
        ew_act4(make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w), act);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j < n) a.y[i + j] = reef_act(a.a[i + j] + a.b[i + j], act);
  }
}

__device__ void copy_body(int vb, const copy_args& a, char* smem) {
  const long long i = (long long)vb * EW_PER_VB + threadIdx.x * 4;
  const long long n = a.numel;
  if (i + 4 <= n && ew_aligned(a.x) && ew_aligned(a.y)) {
    *reinterpret_cast<float4*>(a.y + i) = __ldg(reinterpret_cast<const float4*>(a.x + i));
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j < n) a.y[i + j] = __ldg(a.x + i + j);
  }
}

#endif  // REEF_ELEMENTWISE_CU
