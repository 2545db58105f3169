// elementwise.cu: the kernels of kernels/ops_elementwise.py, float32 unless said.
//
// Layout, every body: one virtual block covers 1024 output elements (the spec's
// elems_per_virtual_block); thread t handles outputs vb * 1024 + 4 t .. + 3, as
// one 16-byte access per operand when the pointers are 16-byte aligned and the
// four are in range, else as scalars. Element indices are 64-bit.
//   relu, unary, copy   flat x -> y (ew_map); unary's op is an act index (as in
//                       reef_act), then EW_OP_CLAMP and EW_OP_AFFINE.
//   cast_i64            flat int64 x -> float32 y (round to nearest).
//   add                 flat act(a + b).
//   binary              act(a op b), output [d0, d1, d2, d3]. The thread's first
//                       index is split into coordinates once (32-bit divisions
//                       when the output has < 2^32 elements), then stepped with
//                       carries; an input dim of 1 has stride 0 (broadcast).
//                       Vector path when d3 % 4 == 0 (the four share a row) and
//                       each input's innermost dim is d3 (a float4 load) or 1
//                       (one value for the row).
//   channel_affine      act(x * scale[ch] + shift[ch]) over [n, c, inner]: the
//                       channel of the first index from one division, then
//                       stepped; vector path when inner % 4 == 0 (one channel).
// In place (y aliasing an input of y's shape): every element is read and then
// written by the same thread, so plain (coherent) loads are used; copy and
// cast_i64 never run in place and load through __ldg.
// Rounding: affine, channel_affine and binary use the __f*_rn intrinsics, which
// are never fused into a multiply-add, so x * scale + shift rounds twice and an
// op's result is rounded before its act, as torch's separate kernels do.
#ifndef REEF_ELEMENTWISE_CU
#define REEF_ELEMENTWISE_CU

#include "reef_common.cuh"

#define EW_PER_VB 1024

// unary's op values past the activations (ops_elementwise.UNARY_OPS).
#define EW_OP_CLAMP (REEF_ACT_COUNT + 0)
#define EW_OP_AFFINE (REEF_ACT_COUNT + 1)

// binary's op values (ops_elementwise.BINARY_OPS).
#define EW_BIN_ADD 0
#define EW_BIN_SUB 1
#define EW_BIN_MUL 2
#define EW_BIN_DIV 3

__device__ __forceinline__ bool ew_aligned(const void* p) {
  return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// The first of this thread's four elements in virtual block vb.
__device__ __forceinline__ long long ew_first(int vb) {
  return (long long)vb * EW_PER_VB + threadIdx.x * 4;
}

// q = a / b and r = a % b for a >= 0, b > 0; a 32-bit division when `narrow`
// (the caller knows a < 2^32), the 64-bit one otherwise.
__device__ __forceinline__ long long ew_divmod(long long a, int b, int& r,
                                               bool narrow) {
  const long long q =
      narrow ? (long long)((unsigned)a / (unsigned)b) : a / (long long)b;
  r = (int)(a - q * b);
  return q;
}

__device__ __forceinline__ float4 ew_act4(float4 v, int act) {
  return make_float4(reef_act(v.x, act), reef_act(v.y, act), reef_act(v.z, act),
                     reef_act(v.w, act));
}

// y[i] = f(x[i]) for this thread's four elements of [n]; x and y may alias.
template <typename F>
__device__ __forceinline__ void ew_map(int vb, const float* x, float* y,
                                       long long n, F f) {
  const long long i = ew_first(vb);
  if (i + 4 <= n && ew_aligned(x) && ew_aligned(y)) {
    const float4 v = *reinterpret_cast<const float4*>(x + i);
    *reinterpret_cast<float4*>(y + i) = make_float4(f(v.x), f(v.y), f(v.z), f(v.w));
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j < n) y[i + j] = f(x[i + j]);
  }
}

__device__ void relu_body(int vb, const relu_args& a, char* smem) {
  ew_map(vb, a.x, a.y, a.numel, [](float v) { return reef_act(v, REEF_ACT_RELU); });
}

__device__ __forceinline__ float ew_unary(float v, const unary_args& a) {
  if (a.op == EW_OP_CLAMP) return reef_clamp(v, a.lo, a.hi);
  if (a.op == EW_OP_AFFINE) return __fadd_rn(__fmul_rn(v, a.scale), a.shift);
  return reef_act(v, a.op);
}

__device__ void unary_body(int vb, const unary_args& a, char* smem) {
  ew_map(vb, a.x, a.y, a.numel, [&a](float v) { return ew_unary(v, a); });
}

__device__ void add_body(int vb, const add_args& a, char* smem) {
  const long long i = ew_first(vb);
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
  const long long i = ew_first(vb);
  const long long n = a.numel;
  if (i + 4 <= n && ew_aligned(a.x) && ew_aligned(a.y)) {
    *reinterpret_cast<float4*>(a.y + i) = __ldg(reinterpret_cast<const float4*>(a.x + i));
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j < n) a.y[i + j] = __ldg(a.x + i + j);
  }
}

__device__ void cast_i64_body(int vb, const cast_i64_args& a, char* smem) {
  const long long i = ew_first(vb);
  const long long n = a.numel;
  if (i + 4 <= n && ew_aligned(a.x) && ew_aligned(a.y)) {
    const longlong2 u = __ldg(reinterpret_cast<const longlong2*>(a.x + i));
    const longlong2 v = __ldg(reinterpret_cast<const longlong2*>(a.x + i + 2));
    *reinterpret_cast<float4*>(a.y + i) =
        make_float4((float)u.x, (float)u.y, (float)v.x, (float)v.y);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j < n) a.y[i + j] = (float)__ldg(a.x + i + j);
  }
}

// --- binary ---------------------------------------------------------------------

// Element strides of an input [s0, s1, s2, s3] broadcast to the output: 0 along
// a dim of size 1 (where the output's coordinate may be anything).
struct EwStrides {
  long long s0, s1, s2;
  int s3;
};

__device__ __forceinline__ EwStrides ew_bcast_strides(int a0, int a1, int a2,
                                                      int a3) {
  EwStrides s;
  s.s3 = a3 == 1 ? 0 : 1;
  s.s2 = a2 == 1 ? 0 : a3;
  s.s1 = a1 == 1 ? 0 : (long long)a2 * a3;
  s.s0 = a0 == 1 ? 0 : (long long)a1 * a2 * a3;
  return s;
}

__device__ __forceinline__ long long ew_offset(const EwStrides& s, const int c[4]) {
  return c[0] * s.s0 + c[1] * s.s1 + c[2] * s.s2 + (long long)c[3] * s.s3;
}

// The next output coordinate after c in [d0, d1, d2, d3] (row-major).
__device__ __forceinline__ void ew_step(int c[4], int d1, int d2, int d3) {
  if (++c[3] == d3) {
    c[3] = 0;
    if (++c[2] == d2) {
      c[2] = 0;
      if (++c[1] == d1) {
        c[1] = 0;
        ++c[0];
      }
    }
  }
}

__device__ __forceinline__ float ew_binop(float u, float v, int op) {
  switch (op) {
    case EW_BIN_SUB:
      return __fsub_rn(u, v);
    case EW_BIN_MUL:
      return __fmul_rn(u, v);
    case EW_BIN_DIV:
      return __fdiv_rn(u, v);
    default:  // EW_BIN_ADD
      return __fadd_rn(u, v);
  }
}

// Four consecutive values of an input along a row: a float4 when its innermost
// dim is the output's (s3 == 1, 16-byte aligned), else one value repeated.
__device__ __forceinline__ float4 ew_row4(const float* p, long long off, int s3) {
  if (s3) return *reinterpret_cast<const float4*>(p + off);
  const float v = p[off];
  return make_float4(v, v, v, v);
}

// Whether an input can take the vector path: innermost dim 1, or the output's
// (d3 % 4 == 0 is checked by the caller) with a 16-byte aligned base.
__device__ __forceinline__ bool ew_row4_ok(const float* p, int inner, int d3) {
  return inner == 1 || (inner == d3 && ew_aligned(p));
}

__device__ void binary_body(int vb, const binary_args& a, char* smem) {
  const int d1 = a.shape_1, d2 = a.shape_2, d3 = a.shape_3;
  const long long n = (long long)a.shape_0 * d1 * d2 * d3;
  const long long i = ew_first(vb);
  if (i < n) {
    const bool narrow = n <= 0xffffffffLL;
    int c[4];
    long long r = ew_divmod(i, d3, c[3], narrow);
    r = ew_divmod(r, d2, c[2], narrow);
    c[0] = (int)ew_divmod(r, d1, c[1], narrow);
    const EwStrides sa =
        ew_bcast_strides(a.a_shape_0, a.a_shape_1, a.a_shape_2, a.a_shape_3);
    const EwStrides sb =
        ew_bcast_strides(a.b_shape_0, a.b_shape_1, a.b_shape_2, a.b_shape_3);
    const int op = a.op, act = a.act;
    if ((d3 & 3) == 0 && ew_aligned(a.y) && ew_row4_ok(a.a, a.a_shape_3, d3) &&
        ew_row4_ok(a.b, a.b_shape_3, d3)) {
      // i % 4 == 0 and d3 % 4 == 0: the four share a row and c[3] % 4 == 0.
      const float4 u = ew_row4(a.a, ew_offset(sa, c), sa.s3);
      const float4 v = ew_row4(a.b, ew_offset(sb, c), sb.s3);
      *reinterpret_cast<float4*>(a.y + i) = ew_act4(
          make_float4(ew_binop(u.x, v.x, op), ew_binop(u.y, v.y, op),
                      ew_binop(u.z, v.z, op), ew_binop(u.w, v.w, op)),
          act);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (i + j < n) {
          const float u = a.a[ew_offset(sa, c)], v = a.b[ew_offset(sb, c)];
          a.y[i + j] = reef_act(ew_binop(u, v, op), act);
          ew_step(c, d1, d2, d3);
        }
      }
    }
  }
}

// --- channel_affine -------------------------------------------------------------

__device__ __forceinline__ float ew_channel_affine(float v, float s, float t,
                                                   int act) {
  return reef_act(__fadd_rn(__fmul_rn(v, s), t), act);
}

__device__ void channel_affine_body(int vb, const channel_affine_args& a,
                                    char* smem) {
  const int c = a.c, inner = a.inner, act = a.act;
  const long long n = (long long)a.n * c * inner;
  const long long i = ew_first(vb);
  if (i < n) {
    const bool narrow = n <= 0xffffffffLL;
    int pos, ch;
    ew_divmod(ew_divmod(i, inner, pos, narrow), c, ch, narrow);
    if ((inner & 3) == 0 && ew_aligned(a.x) && ew_aligned(a.y)) {
      // i % 4 == 0 and inner % 4 == 0: the four share channel ch.
      const float s = a.scale[ch], t = a.shift[ch];
      const float4 v = *reinterpret_cast<const float4*>(a.x + i);
      *reinterpret_cast<float4*>(a.y + i) = make_float4(
          ew_channel_affine(v.x, s, t, act), ew_channel_affine(v.y, s, t, act),
          ew_channel_affine(v.z, s, t, act), ew_channel_affine(v.w, s, t, act));
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (i + j < n) {
          a.y[i + j] = ew_channel_affine(a.x[i + j], a.scale[ch], a.shift[ch], act);
          if (++pos == inner) {
            pos = 0;
            if (++ch == c) ch = 0;
          }
        }
      }
    }
  }
}

#endif  // REEF_ELEMENTWISE_CU
