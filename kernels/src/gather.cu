// gather.cu: embedding (a row gather) and strided_copy, float32 values.
//
// embedding_body: y[i, :] = table[ids[i], :] for int64 ids. One warp per id, 8
// ids per virtual block (warp w copies id 8 vb + w); lanes stride the row, so a
// warp's loads and stores are consecutive. Rows move as float4 when dim % 4 == 0
// and table and y are 16-byte aligned (then every row is), else as floats. An id
// outside [0, vocab), which the torch reference refuses with a RequestError,
// makes its row of y all NaN (0x7fc00000) instead of reading out of bounds.
//
// strided_copy_body: for every index i of shape[0..5] (outermost first),
//   y[y_offset + sum_d i_d * y_strides_d] = x[x_offset + sum_d i_d * x_strides_d].
// A virtual block covers 1024 consecutive flat indices in row-major order of
// shape (the y iteration order): thread t copies flat indices vb * 1024 + t +
// 256 k, k = 0..3, so where the innermost y stride is 1 a warp's stores are
// consecutive. A thread splits its first index into digits (divisions), then
// steps by 256 adding 256's digits with carries (no divisions). Offsets are
// 64-bit; the catalog guarantees no two indices write one y element.
#ifndef REEF_GATHER_CU
#define REEF_GATHER_CU

#include "reef_common.cuh"

#define GATHER_EMB_ROWS 8
#define GATHER_COPY_PER_VB 1024
#define GATHER_COPY_DIMS 6

__device__ __forceinline__ bool gather_aligned16(const void* p) {
  return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// --- embedding ------------------------------------------------------------------

__device__ void embedding_body(int vb, const embedding_args& a, char* smem) {
  const int lane = threadIdx.x & 31;
  const long long i = (long long)vb * GATHER_EMB_ROWS + (threadIdx.x >> 5);
  if (i >= a.n) return;  // warp-uniform; no block barrier in this body
  const int dim = a.dim;
  const long long id = __ldg(a.ids + i);
  float* yr = a.y + i * dim;
  if (id < 0 || id >= a.vocab) {
    const float nan = __int_as_float(0x7fc00000);
    for (int c = lane; c < dim; c += 32) yr[c] = nan;
    return;
  }
  const float* tr = a.table + id * dim;
  if ((dim & 3) == 0 && gather_aligned16(a.table) && gather_aligned16(a.y)) {
    const float4* src = reinterpret_cast<const float4*>(tr);
    float4* dst = reinterpret_cast<float4*>(yr);
    for (int c = lane; c < (dim >> 2); c += 32) dst[c] = __ldg(src + c);
  } else {
    for (int c = lane; c < dim; c += 32) yr[c] = __ldg(tr + c);
  }
}

// --- strided copy ---------------------------------------------------------------

// Digits of e in the mixed radix s[0..5] (d[5] fastest); d[0] is not reduced.
template <typename T>
__device__ __forceinline__ void gather_digits(T e, const int* s, int* d) {
#pragma unroll
  for (int k = GATHER_COPY_DIMS - 1; k > 0; --k) {
    const T q = e / (T)s[k];
    d[k] = (int)(e - q * (T)s[k]);
    e = q;
  }
  d[0] = (int)e;
}

// d += step (digits in the radix s), carrying; d[0] is not reduced.
__device__ __forceinline__ void gather_step(int* d, const int* step, const int* s) {
  int carry = 0;
#pragma unroll
  for (int k = GATHER_COPY_DIMS - 1; k > 0; --k) {
    d[k] += step[k] + carry;  // < 2 s[k]: digits < s[k], carry <= 1
    carry = d[k] >= s[k];
    if (carry) d[k] -= s[k];
  }
  d[0] += step[0] + carry;
}

__device__ __forceinline__ long long gather_offset(const int* d, const int* stride,
                                                   int offset) {
  long long off = offset;
#pragma unroll
  for (int k = 0; k < GATHER_COPY_DIMS; ++k) off += (long long)d[k] * stride[k];
  return off;
}

__device__ void strided_copy_body(int vb, const strided_copy_args& a, char* smem) {
  const int s[GATHER_COPY_DIMS] = {a.shape_0, a.shape_1, a.shape_2,
                                   a.shape_3, a.shape_4, a.shape_5};
  const int xs[GATHER_COPY_DIMS] = {a.x_strides_0, a.x_strides_1, a.x_strides_2,
                                    a.x_strides_3, a.x_strides_4, a.x_strides_5};
  const int ys[GATHER_COPY_DIMS] = {a.y_strides_0, a.y_strides_1, a.y_strides_2,
                                    a.y_strides_3, a.y_strides_4, a.y_strides_5};
  long long total = 1;
#pragma unroll
  for (int k = 0; k < GATHER_COPY_DIMS; ++k) total *= s[k];
  long long e = (long long)vb * GATHER_COPY_PER_VB + threadIdx.x;
  if (e >= total) return;  // no block barrier in this body
  int d[GATHER_COPY_DIMS], step[GATHER_COPY_DIMS];
  gather_digits<unsigned>(REEF_CTA_THREADS, s, step);
  if (total <= 0xffffffffll)
    gather_digits<unsigned>((unsigned)e, s, d);  // 32-bit division is cheaper
  else
    gather_digits<unsigned long long>((unsigned long long)e, s, d);
#pragma unroll
  for (int k = 0; k < GATHER_COPY_PER_VB / REEF_CTA_THREADS; ++k) {
    if (k) {
      e += REEF_CTA_THREADS;
      if (e >= total) break;
      gather_step(d, step, s);
    }
    const float v = __ldg(a.x + gather_offset(d, xs, a.x_offset));
    a.y[gather_offset(d, ys, a.y_offset)] = v;
  }
}

#endif  // REEF_GATHER_CU
