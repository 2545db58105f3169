// simt_gemm.cuh: the fp32 SIMT tiled GEMM shared by linear.cu and conv2d.cu.
//
// acc += A[BM, K] @ B[K, BN] for one BM x BN tile, fp32 FMAs in k order (the
// same bits whichever body runs it). 256 threads as 16 x 16: thread (tx, ty) =
// (tid & 15, tid >> 4) holds a TM x TN micro-tile (TM = BM / 16, TN = BN / 16):
// rows ty * VM + 16 * VM * g + i (g < TM / VM, i < VM, VM = min(TM, 4)) and
// columns tx * VN + 16 * VN * h + j likewise, so each k step reads VM- and
// VN-wide vectors from shared memory. Shared memory (SimtTile::SMEM_FLOATS):
//   As [2][BK][BM + 4]   A transposed (k-major rows, padded by 4 floats)
//   Bs [2][BK][BN + 4]   B (k-major rows)
// Register-staged double buffering, one barrier per k-tile: k-tile t + 1 is
// fetched from global memory into registers before the FMAs of tile t and
// stashed into the other buffer after them.
//
// The operands come from a Loader the body builds (a struct such as linear.cu's
// LinLoader, or SimtFnLoader over three lambdas):
//   void fetch(int t);                 k-tile t: global -> registers
//   void stash(float* as, float* bs);  registers -> one buffer of As, Bs
//   void step(int t);                  once per iteration, after fetch(t + 1)
//                                      (conv2d builds its gather table there)
// SimtKRows is the loader part for a k-contiguous [rows, K] operand (linear's x
// and w, conv2d's weights): BM (or BN) x BK tiles in float4 chunks, zero outside
// the matrix, 16-byte loads only when `vec` (aligned base, K % 4 == 0).
#ifndef REEF_SIMT_GEMM_CUH
#define REEF_SIMT_GEMM_CUH

#include "reef_common.cuh"

__device__ __forceinline__ bool simt_aligned(const void* p, unsigned bytes) {
  return (reinterpret_cast<unsigned long long>(p) & (bytes - 1)) == 0;
}

// Four consecutive k of one row of a [rows, K] k-contiguous matrix, zero outside.
__device__ __forceinline__ float4 simt_load4(const float* __restrict__ base,
                                             int rows, int row, int k, int K,
                                             bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (row < rows) {
    const float* p = base + (long long)row * K + k;
    if (vec) {
      if (k < K) v = __ldg(reinterpret_cast<const float4*>(p));
    } else {
      if (k < K) v.x = __ldg(p);
      if (k + 1 < K) v.y = __ldg(p + 1);
      if (k + 2 < K) v.z = __ldg(p + 2);
      if (k + 3 < K) v.w = __ldg(p + 3);
    }
  }
  return v;
}

template <int BM, int BN, int BK>
struct SimtTile {
  static constexpr int TM = BM / 16;  // rows per thread
  static constexpr int TN = BN / 16;  // cols per thread
  static constexpr int VM = TM < 4 ? TM : 4;  // fragment vector width
  static constexpr int VN = TN < 4 ? TN : 4;
  static constexpr int SA = BM + 4;  // smem row strides (floats), padded
  static constexpr int SB = BN + 4;
  static constexpr int A_CHUNKS = BM * BK / 4;  // float4 chunks per k-tile
  static constexpr int B_CHUNKS = BN * BK / 4;
  static constexpr int A_PER = (A_CHUNKS + 255) / 256;
  static constexpr int B_PER = (B_CHUNKS + 255) / 256;
  static constexpr int SMEM_FLOATS = 2 * BK * (SA + SB);  // ops_linear mirrors
  static_assert(BM % 16 == 0 && BN % 16 == 0, "tile must be 16 x 16 threads");
  static_assert(TM == 2 || TM == 4 || TM == 8, "TM in 2, 4, 8");
  static_assert(TN == 2 || TN == 4 || TN == 8, "TN in 2, 4, 8");
  static_assert(BK % 4 == 0 && BK <= 32, "BK multiple of 4, at most 32");
  static_assert(A_CHUNKS % 256 == 0 || A_CHUNKS < 256, "A chunks");
  static_assert(B_CHUNKS % 256 == 0 || B_CHUNKS < 256, "B chunks");
};

// V floats from shared memory (one float4 or float2 load).
template <int V>
__device__ __forceinline__ void simt_lds(float* dst, const float* src) {
  if (V == 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
  } else {
    const float2 v = *reinterpret_cast<const float2*>(src);
    dst[0] = v.x;
    dst[1] = v.y;
  }
}

// V floats to global memory in one store (p aligned to 4 * V bytes).
template <int V>
__device__ __forceinline__ void simt_stv(float* p, const float (&v)[V]) {
  if (V == 4) {
    *reinterpret_cast<float4*>(p) =
        make_float4(v[0], v[1], v[V > 2 ? 2 : 0], v[V > 3 ? 3 : 0]);
  } else {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  }
}

// One k-contiguous [rows, K] operand: fetch k-tile t's BK columns of the
// CHUNKS / (BK / 4) rows from row0 on into registers (PER float4 per thread),
// stash them transposed (s[k * S + row]).
template <int CHUNKS, int PER, int BK, int S>
struct SimtKRows {
  const float* base;
  int rows, row0, K;
  bool vec;
  float4 r[PER];

  __device__ __forceinline__ SimtKRows(const float* base_, int rows_, int row0_,
                                       int K_, bool vec_)
      : base(base_), rows(rows_), row0(row0_), K(K_), vec(vec_) {}

  __device__ __forceinline__ void fetch(int t, int tid) {
#pragma unroll
    for (int i = 0; i < PER; ++i) {
      const int c = tid + 256 * i;
      if (CHUNKS % 256 == 0 || c < CHUNKS) {
        const int row = c / (BK / 4);
        const int kq = (c % (BK / 4)) * 4;
        r[i] = simt_load4(base, rows, row0 + row, t * BK + kq, K, vec);
      }
    }
  }
  __device__ __forceinline__ void stash(float* s, int tid) const {
#pragma unroll
    for (int i = 0; i < PER; ++i) {
      const int c = tid + 256 * i;
      if (CHUNKS % 256 == 0 || c < CHUNKS) {
        const int row = c / (BK / 4);
        const int kq = (c % (BK / 4)) * 4;
        s[(kq + 0) * S + row] = r[i].x;
        s[(kq + 1) * S + row] = r[i].y;
        s[(kq + 2) * S + row] = r[i].z;
        s[(kq + 3) * S + row] = r[i].w;
      }
    }
  }
};

// The A operand of a tile (BM rows), and the B operand when it is k-contiguous.
template <int BM, int BN, int BK, class T = SimtTile<BM, BN, BK>>
using SimtRowsA = SimtKRows<T::A_CHUNKS, T::A_PER, BK, T::SA>;
template <int BM, int BN, int BK, class T = SimtTile<BM, BN, BK>>
using SimtRowsB = SimtKRows<T::B_CHUNKS, T::B_PER, BK, T::SB>;

template <int TM, int TN>
__device__ __forceinline__ void simt_zero(float (&acc)[TM][TN]) {
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
}

// A Loader made of three callables, for bodies that keep their operand state in
// lambdas. conv2d_body uses it: its gather state as plain locals cost up to 12
// registers less than the same values as struct fields. Brace-initialize it in
// place (a copy returned from a helper function cost up to 7 more).
template <class Fetch, class Stash, class Step>
struct SimtFnLoader {
  Fetch& fetch_;
  Stash& stash_;
  Step& step_;
  __device__ __forceinline__ void fetch(int t) { fetch_(t); }
  __device__ __forceinline__ void stash(float* as, float* bs) { stash_(as, bs); }
  __device__ __forceinline__ void step(int t) { step_(t); }
};

// acc += A @ B over `ktiles` k-tiles of BK (the caller zeroes acc, see
// simt_zero); all 256 threads enter and leave together, and smem is free again
// on return.
template <int BM, int BN, int BK, class Loader>
__device__ __forceinline__ void simt_gemm_tile(
    float (&acc)[SimtTile<BM, BN, BK>::TM][SimtTile<BM, BN, BK>::TN], Loader& ld,
    int ktiles, char* smem) {
  typedef SimtTile<BM, BN, BK> T;
  constexpr int TM = T::TM, TN = T::TN, VM = T::VM, VN = T::VN;
  constexpr int SA = T::SA, SB = T::SB;
  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;
  float* As = reinterpret_cast<float*>(smem);  // [2][BK][SA]
  float* Bs = As + 2 * BK * SA;                 // [2][BK][SB]

  ld.fetch(0);
  ld.stash(As, Bs);
  __syncthreads();

  for (int t = 0; t < ktiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < ktiles;
    if (more) ld.fetch(t + 1);
    ld.step(t);
    const float* as = As + cur * BK * SA;
    const float* bs = Bs + cur * BK * SB;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float fa[TM], fb[TN];
#pragma unroll
      for (int g = 0; g < TM / VM; ++g)
        simt_lds<VM>(fa + g * VM, as + kk * SA + g * 16 * VM + ty * VM);
#pragma unroll
      for (int h = 0; h < TN / VN; ++h)
        simt_lds<VN>(fb + h * VN, bs + kk * SB + h * 16 * VN + tx * VN);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
    }
    if (more) ld.stash(As + (cur ^ 1) * BK * SA, Bs + (cur ^ 1) * BK * SB);
    __syncthreads();
  }
}

// This thread's first tile row of row group g (rows r + i, i < VM) and first
// tile column of column group h (columns c + j, j < VN).
template <int BM, int BN, int BK>
__device__ __forceinline__ int simt_row(int g, int tid) {
  constexpr int VM = SimtTile<BM, BN, BK>::VM;
  return g * 16 * VM + (tid >> 4) * VM;
}
template <int BM, int BN, int BK>
__device__ __forceinline__ int simt_col(int h, int tid) {
  constexpr int VN = SimtTile<BM, BN, BK>::VN;
  return h * 16 * VN + (tid & 15) * VN;
}

#endif  // REEF_SIMT_GEMM_CUH
