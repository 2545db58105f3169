// bmm.cu: batched matmul y[i] = scale * a[i] @ b[i] (b[i]^T when trans_b).
//
// a [batch, m, k]; b [batch, k, n], or [batch, n, k] when trans_b (attention's
// Q @ K^T without a transpose copy); y [batch, m, n]. One virtual block is one
// BM x BN tile of one matrix: vb = (i * tiles_m + tile row) * tiles_n + tile col.
// Bodies (spec.variant in ops_bmm.py picks one per shape and precision; TB is
// trans_b as 0/1, a template argument so each layout compiles its own loop):
//   bmm_body<BM, BN, BK, TB>   float32, precision "ieee": SIMT tiled SGEMM, 16 x 16
//                              threads, each a (BM/16) x (BN/16) micro-tile
//                              (rows ty * VM + 16 * VM * g + i, cols likewise);
//                              register-staged double buffering, one barrier per
//                              k-tile. smem [2][BK][BM + 4] A^T and [2][BK][BN + 4]
//                              B (k-major rows; a trans_b tile is transposed on its
//                              way in): 2 * BK * (BM + 4 + BN + 4) floats.
//   bmm_tf32_body<BM, BN, TB>  float32, precision "tf32": tensor cores (tc_gemm.cuh,
//                              mma m16n8k8 tf32, fp32 accumulate).
//   bmm_f16_body, bmm_bf16_body<BM, BN, TB>  raw 16-bit operands (bmm_f16 /
//                              bmm_bf16 kernels): tc_gemm.cuh, mma m16n8k16, fp32
//                              accumulate, y rounded once.
// Loads are zero-filled outside the matrices, stores guarded; 16-byte accesses
// only where the base pointer and the row length allow them; offsets are 64-bit.
#ifndef REEF_BMM_CU
#define REEF_BMM_CU

#include "reef_common.cuh"
#include "tc_gemm.cuh"

// --- SIMT float32 ("ieee") ------------------------------------------------------

template <int BM, int BN, int BK>
struct BmmTile {
  static constexpr int TM = BM / 16, TN = BN / 16;   // per-thread micro-tile
  static constexpr int VM = TM < 4 ? TM : 4;         // smem read vector widths
  static constexpr int VN = TN < 4 ? TN : 4;
  static constexpr int SA = BM + 4, SB = BN + 4;     // smem row strides (floats)
  static constexpr int CHUNKS_A = BM * BK / 4;       // float4 chunks per k-tile
  static constexpr int CHUNKS_B = BN * BK / 4;
  static constexpr int PER_A = (CHUNKS_A + 255) / 256;
  static constexpr int PER_B = (CHUNKS_B + 255) / 256;
  static constexpr int SMEM_FLOATS = 2 * BK * (SA + SB);  // ops_linear mirrors
  static_assert(BM % 16 == 0 && BN % 16 == 0 && BK % 4 == 0, "tile shape");
  static_assert((TM == 2 || TM == 4 || TM == 8) && (TN == 2 || TN == 4 || TN == 8),
                "micro-tile 2, 4 or 8 per side");
};

// Four consecutive elements (r, c .. c + 3) of a row-major [rows, cols] matrix,
// zero outside it; one 16-byte load when `vec` (aligned base, cols % 4 == 0).
__device__ __forceinline__ float4 bmm_ld4(const float* base, int rows, int cols,
                                          int r, int c, bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (r < rows && c < cols) {
    const float* p = base + (long long)r * cols + c;
    if (vec) {
      v = __ldg(reinterpret_cast<const float4*>(p));
    } else {
      v.x = __ldg(p);
      if (c + 1 < cols) v.y = __ldg(p + 1);
      if (c + 2 < cols) v.z = __ldg(p + 2);
      if (c + 3 < cols) v.w = __ldg(p + 3);
    }
  }
  return v;
}

// One k-tile of a row-major [rows, cols] matrix into registers: chunk c is
// (r0 + c / CPR, c0 + 4 * (c % CPR)).
template <int CHUNKS, int PER, int CPR>
__device__ __forceinline__ void bmm_fetch(float4 (&reg)[PER], const float* base,
                                          int rows, int cols, int r0, int c0,
                                          bool vec, int tid) {
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int c = tid + 256 * i;
    if (CHUNKS % 256 == 0 || c < CHUNKS)
      reg[i] = bmm_ld4(base, rows, cols, r0 + c / CPR, c0 + 4 * (c % CPR), vec);
  }
}

// Store fetched chunks as s[k][x] (row stride S). KMAJOR_SRC: the source rows
// were x with k contiguous (transpose on the way); else rows were k.
template <int CHUNKS, int PER, int CPR, int S, bool KMAJOR_SRC>
__device__ __forceinline__ void bmm_stash(const float4 (&reg)[PER], float* s,
                                          int tid) {
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int c = tid + 256 * i;
    if (CHUNKS % 256 == 0 || c < CHUNKS) {
      const int r = c / CPR, q = 4 * (c % CPR);
      if (KMAJOR_SRC) {
        s[(q + 0) * S + r] = reg[i].x;
        s[(q + 1) * S + r] = reg[i].y;
        s[(q + 2) * S + r] = reg[i].z;
        s[(q + 3) * S + r] = reg[i].w;
      } else {
        *reinterpret_cast<float4*>(s + r * S + q) = reg[i];
      }
    }
  }
}

template <int V>
__device__ __forceinline__ void bmm_lds(float* dst, const float* src) {
  if constexpr (V == 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    dst[0] = v.x, dst[1] = v.y, dst[2] = v.z, dst[3] = v.w;
  } else {
    const float2 v = *reinterpret_cast<const float2*>(src);
    dst[0] = v.x, dst[1] = v.y;
  }
}

// The k-tiles of one operand: A ([M, K], k-major) or B ([N, K] when TB, else
// [K, N]); `fetch` pulls k-tile kt into registers, `stash` writes them to smem.
template <int BM, int BN, int BK, bool IS_B, int TB>
struct BmmOperand {
  typedef BmmTile<BM, BN, BK> T;
  static constexpr bool KMAJOR = !IS_B || TB;
  static constexpr int CHUNKS = IS_B ? T::CHUNKS_B : T::CHUNKS_A;
  static constexpr int PER = IS_B ? T::PER_B : T::PER_A;
  static constexpr int CPR = KMAJOR ? BK / 4 : BN / 4;
  static constexpr int S = IS_B ? T::SB : T::SA;
  const float* base;
  int rows, cols, x0;  // x0: first m (A) or n (B) of the tile
  bool vec;

  __device__ __forceinline__ void fetch(float4 (&reg)[PER], int kt, int tid) const {
    if (KMAJOR)
      bmm_fetch<CHUNKS, PER, CPR>(reg, base, rows, cols, x0, kt * BK, vec, tid);
    else
      bmm_fetch<CHUNKS, PER, CPR>(reg, base, rows, cols, kt * BK, x0, vec, tid);
  }
  __device__ __forceinline__ void stash(const float4 (&reg)[PER], float* s,
                                        int tid) const {
    bmm_stash<CHUNKS, PER, CPR, S, KMAJOR>(reg, s, tid);
  }
};

template <int BM, int BN, int BK, int TB>
__device__ void bmm_body(int vb, const bmm_args& args, char* smem) {
  typedef BmmTile<BM, BN, BK> T;
  constexpr int TM = T::TM, TN = T::TN, VM = T::VM, VN = T::VN;
  constexpr int SA = T::SA, SB = T::SB;
  const int M = args.m, N = args.n, K = args.k;
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int bi = vb / (tiles_m * tiles_n);
  const int rest = vb % (tiles_m * tiles_n);
  const int m0 = (rest / tiles_n) * BM, n0 = (rest % tiles_n) * BN;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;

  const float* a = args.a + bi * ((long long)M * K);
  const float* b = args.b + bi * ((long long)N * K);
  float* y = args.y + bi * ((long long)M * N);
  const BmmOperand<BM, BN, BK, false, TB> opa{a, M, K, m0,
                                               tc_aligned16(a) && K % 4 == 0};
  const BmmOperand<BM, BN, BK, true, TB> opb{
      b, TB ? N : K, TB ? K : N, n0, tc_aligned16(b) && (TB ? K : N) % 4 == 0};

  float* As = reinterpret_cast<float*>(smem);  // [2][BK][SA]
  float* Bs = As + 2 * BK * SA;                 // [2][BK][SB]
  const int ktiles = (K + BK - 1) / BK;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  float4 ra[T::PER_A], rb[T::PER_B];
  opa.fetch(ra, 0, tid);
  opb.fetch(rb, 0, tid);
  opa.stash(ra, As, tid);
  opb.stash(rb, Bs, tid);
  __syncthreads();

#pragma unroll 1
  for (int kt = 0; kt < ktiles; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < ktiles;
    if (more) {
      opa.fetch(ra, kt + 1, tid);
      opb.fetch(rb, kt + 1, tid);
    }
    const float* as = As + cur * BK * SA;
    const float* bs = Bs + cur * BK * SB;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float fa[TM], fb[TN];
#pragma unroll
      for (int g = 0; g < TM / VM; ++g)
        bmm_lds<VM>(fa + g * VM, as + kk * SA + g * 16 * VM + ty * VM);
#pragma unroll
      for (int h = 0; h < TN / VN; ++h)
        bmm_lds<VN>(fb + h * VN, bs + kk * SB + h * 16 * VN + tx * VN);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
    }
    if (more) {
      opa.stash(ra, As + (cur ^ 1) * BK * SA, tid);
      opb.stash(rb, Bs + (cur ^ 1) * BK * SB, tid);
    }
    __syncthreads();
  }

  // Epilogue: y = scale * acc, guarded; VN-wide stores where aligned.
  const float scale = args.scale;
  const bool vec_out =
      N % VN == 0 && (reinterpret_cast<unsigned long long>(y) & (4 * VN - 1)) == 0;
#pragma unroll
  for (int g = 0; g < TM / VM; ++g)
#pragma unroll
    for (int i = 0; i < VM; ++i) {
      const int row = m0 + g * 16 * VM + ty * VM + i;
      if (row >= M) continue;
      float* yrow = y + (long long)row * N;
#pragma unroll
      for (int h = 0; h < TN / VN; ++h) {
        const int col = n0 + h * 16 * VN + tx * VN;
        float v[VN];
#pragma unroll
        for (int j = 0; j < VN; ++j) v[j] = acc[g * VM + i][h * VN + j] * scale;
        if (vec_out && col + VN <= N) {
          if constexpr (VN == 4)
            *reinterpret_cast<float4*>(yrow + col) = make_float4(v[0], v[1], v[2], v[3]);
          else
            *reinterpret_cast<float2*>(yrow + col) = make_float2(v[0], v[1]);
        } else {
#pragma unroll
          for (int j = 0; j < VN; ++j)
            if (col + j < N) yrow[col + j] = v[j];
        }
      }
    }
}

// --- tensor cores ---------------------------------------------------------------

template <int BM, int BN, int TB>
__device__ void bmm_tf32_body(int vb, const bmm_args& args, char* smem) {
  tc_gemm_vb<TcTf32, BM, BN, TB != 0>(vb, args.a, args.b, args.y, nullptr, args.m,
                                       args.n, args.k, args.scale, REEF_ACT_NONE,
                                       smem);
}

template <int BM, int BN, int TB>
__device__ void bmm_f16_body(int vb, const bmm_f16_args& args, char* smem) {
  tc_gemm_vb<TcF16, BM, BN, TB != 0>(vb, args.a, args.b, args.y, nullptr, args.m,
                                      args.n, args.k, args.scale, REEF_ACT_NONE,
                                      smem);
}

template <int BM, int BN, int TB>
__device__ void bmm_bf16_body(int vb, const bmm_bf16_args& args, char* smem) {
  tc_gemm_vb<TcBf16, BM, BN, TB != 0>(vb, args.a, args.b, args.y, nullptr, args.m,
                                       args.n, args.k, args.scale, REEF_ACT_NONE,
                                       smem);
}

#endif  // REEF_BMM_CU
