// tc_gemm.cuh: the tensor-core GEMM tile shared by bmm.cu and linear_tc.cu.
//
// Y[M, N] = act(scale * A[M, K] @ B + bias[N]) for one BM x BN tile of Y, where
// A is k-contiguous ([M, K]) and B is either k-contiguous ([N, K]: B_KMAJOR, as
// linear weights and attention's K^T) or n-contiguous ([K, N]). fp32 accumulate.
//
// Element kinds (template K):
//   TcTf32  float in memory, mma.sync m16n8k8 tf32 (inputs rounded with
//           cvt.rna.tf32.f32), float output;
//   TcF16   raw 16-bit words (unsigned short, the args structs' half pointee),
//   TcBf16  mma.sync m16n8k16 f16 / bf16, output rounded to the half type once.
//
// Tile: 8 warps as WM x WN, each a (BM/WM) x (BN/WN) warp tile of MI x NI
// m16 x n8 fragments. A k-tile is 64 bytes of k per row (BK = 32 halves or 16
// floats); STAGES k-tiles in flight through cp.async (16-byte copies, zero fill
// past the edges). Shared memory per stage:
//   A  [BM][80 B]               (64 B of k + 16 B pad: ldmatrix / LDS conflict free)
//   B  [BN][80 B]               k-contiguous B, same as A
//      [BK][BN * E + pad]       n-contiguous B (pad 16 B for halves, 32 B for
//                               floats: conflict-free ldmatrix.trans / LDS)
// Fragments: halves through ldmatrix.x4 (.trans for n-contiguous B); tf32 through
// 32-bit LDS. When an operand's base is not 16-byte aligned or its row length is
// not a multiple of 16 bytes, its chunks are gathered element by element
// (guarded) and stored with ordinary st.shared instead of cp.async.
// Epilogue straight from the accumulators: (row g / g + 8, columns 2t, 2t + 1)
// per fragment, as pairs when N is even and Y is aligned, else single stores.
// Every load and store is bounds-checked; offsets are 64-bit.
//
// tc_conv_vb (end of file): the same tile as an implicit-GEMM NCHW convolution
// (conv2d's tf32 body, conv2d_f16 / conv2d_bf16): A = the weights, B gathered
// from x through a per-k-tile table; see the comment above it.
#ifndef REEF_TC_GEMM_CUH
#define REEF_TC_GEMM_CUH

#include "reef_common.cuh"

// --- element kinds ------------------------------------------------------------

struct TcTf32 {
  typedef float G;  // element in global memory (inputs and output)
  static constexpr int E = 4;   // bytes per element
  static constexpr int KS = 8;  // k per mma
  static __device__ __forceinline__ float to_f32(float v) { return v; }
  static __device__ __forceinline__ float from_f32(float v) { return v; }
};

struct TcF16 {
  typedef unsigned short G;
  static constexpr int E = 2;
  static constexpr int KS = 16;
  static __device__ __forceinline__ float to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
  }
  static __device__ __forceinline__ unsigned short from_f32(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
  }
};

struct TcBf16 {
  typedef unsigned short G;
  static constexpr int E = 2;
  static constexpr int KS = 16;
  static __device__ __forceinline__ float to_f32(unsigned short h) {
    return __uint_as_float(((unsigned)h) << 16);
  }
  static __device__ __forceinline__ unsigned short from_f32(float f) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
  }
};

// --- tile configuration ---------------------------------------------------------

template <class K, int BM, int BN, bool B_KMAJOR>
struct TcCfg {
  static constexpr int E = K::E;
  static constexpr int BK = 64 / E;  // k per stage
  static constexpr int STAGES = 3;
  static constexpr int WM = (BM >= 128 && BN <= 64) ? 4 : 2;  // warps along m
  static constexpr int WN = 8 / WM;
  static constexpr int MI = BM / WM / 16;  // m16 fragments per warp
  static constexpr int NI = BN / WN / 8;   // n8 fragments per warp
  static constexpr int A_LD = 80;          // bytes per smem row
  static constexpr int B_LD = B_KMAJOR ? 80 : BN * E + (E == 4 ? 32 : 16);
  static constexpr int A_BYTES = BM * A_LD;
  static constexpr int B_BYTES = B_KMAJOR ? BN * B_LD : BK * B_LD;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;  // ops_linear_tc mirrors
  static_assert(MI >= 1 && NI >= 2 && NI % 2 == 0, "warp tile too small");
  static_assert(BM % (16 * WM) == 0 && BN % (8 * WN) == 0, "tile / warps");
};

// --- PTX wrappers -------------------------------------------------------------

__device__ __forceinline__ unsigned tc_smem_addr(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared; bytes past src_bytes (0 or 16) are zero-filled.
__device__ __forceinline__ void tc_cp_async16(void* dst, const void* src,
                                              int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                   tc_smem_addr(dst)),
               "l"(src), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void tc_cp_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void tc_cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <bool TRANS>
__device__ __forceinline__ void tc_ldmatrix4(unsigned (&r)[4], const char* p) {
  if (TRANS) {
    asm volatile(
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
        : "r"(tc_smem_addr(p)));
  } else {
    asm volatile(
        "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
        : "r"(tc_smem_addr(p)));
  }
}

__device__ __forceinline__ unsigned tc_to_tf32(float v) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
  return r;
}

template <class K>
__device__ __forceinline__ void tc_mma(float (&c)[4], const unsigned (&a)[4],
                                       const unsigned (&b)[2]);

template <>
__device__ __forceinline__ void tc_mma<TcTf32>(float (&c)[4], const unsigned (&a)[4],
                                               const unsigned (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
      "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void tc_mma<TcF16>(float (&c)[4], const unsigned (&a)[4],
                                              const unsigned (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
      "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void tc_mma<TcBf16>(float (&c)[4], const unsigned (&a)[4],
                                               const unsigned (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
      "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// --- global -> shared -----------------------------------------------------------

__device__ __forceinline__ bool tc_aligned16(const void* p) {
  return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// Copy rows [r0, r0 + ROWS) x 16-byte chunks [0, ROW_CHUNKS) starting at column
// c0 of a row-major [rows, cols] matrix (row stride cols) into smem rows of
// dst_ld bytes; elements outside the matrix become zero. `vec`: base 16-byte
// aligned and cols a multiple of a chunk, so whole chunks go through cp.async.
template <class K, int ROWS, int ROW_CHUNKS>
__device__ __forceinline__ void tc_copy_block(char* dst, int dst_ld,
                                              const typename K::G* src, int r0,
                                              int c0, int rows, int cols, bool vec,
                                              int tid) {
  typedef typename K::G G;
  constexpr int EPC = 16 / K::E;  // elements per chunk
  constexpr int CHUNKS = ROWS * ROW_CHUNKS;
#pragma unroll
  for (int i = 0; i < (CHUNKS + REEF_CTA_THREADS - 1) / REEF_CTA_THREADS; ++i) {
    const int c = tid + i * REEF_CTA_THREADS;
    if (CHUNKS % REEF_CTA_THREADS == 0 || c < CHUNKS) {
      const int r = c / ROW_CHUNKS, q = c % ROW_CHUNKS;
      const int gr = r0 + r, gc = c0 + q * EPC;
      char* d = dst + r * dst_ld + q * 16;
      const bool row_in = gr < rows;
      const G* p = src + (long long)(row_in ? gr : 0) * cols + gc;
      if (vec) {
        const bool in = row_in && gc < cols;
        tc_cp_async16(d, in ? p : src, in ? 16 : 0);
      } else {
        union {
          uint4 v;
          G e[EPC];
        } u;
#pragma unroll
        for (int j = 0; j < EPC; ++j) u.e[j] = (row_in && gc + j < cols) ? p[j] : G(0);
        *reinterpret_cast<uint4*>(d) = u.v;
      }
    }
  }
}

// --- fragments from shared ------------------------------------------------------

template <class Cfg, class K>
struct TcFrags {
  unsigned a[Cfg::MI][4];
  unsigned b[Cfg::NI][2];
};

// Halves: A via ldmatrix.x4 (lane l: row l % 16, k (l / 16) * 8); B two n8
// fragments per ldmatrix.x4 (k-contiguous: row n, non-transposed; n-contiguous:
// rows k, .trans).
template <class Cfg, class K, bool B_KMAJOR>
__device__ __forceinline__ void tc_load_frags(TcFrags<Cfg, K>& f, const char* as,
                                              const char* bs, int wm0, int wn0,
                                              int ks, int lane) {
  if constexpr (K::E == 2) {
#pragma unroll
    for (int mi = 0; mi < Cfg::MI; ++mi) {
      const int row = wm0 + mi * 16 + (lane & 15);
      const int k = ks * 16 + (lane >> 4) * 8;
      tc_ldmatrix4<false>(f.a[mi], as + row * Cfg::A_LD + k * 2);
    }
#pragma unroll
    for (int p = 0; p < Cfg::NI / 2; ++p) {
      unsigned r[4];
      if (B_KMAJOR) {
        const int n = wn0 + p * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int k = ks * 16 + ((lane >> 3) & 1) * 8;
        tc_ldmatrix4<false>(r, bs + n * Cfg::B_LD + k * 2);
      } else {
        const int k = ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int n = wn0 + p * 16 + (lane >> 4) * 8;
        tc_ldmatrix4<true>(r, bs + k * Cfg::B_LD + n * 2);
      }
      f.b[2 * p][0] = r[0];
      f.b[2 * p][1] = r[1];
      f.b[2 * p + 1][0] = r[2];
      f.b[2 * p + 1][1] = r[3];
    }
  } else {
    // tf32: a0 (g, t) a1 (g + 8, t) a2 (g, t + 4) a3 (g + 8, t + 4); b0 (k t,
    // n g) b1 (k t + 4, n g).
    const int g = lane >> 2, t = lane & 3;
    const float* af = reinterpret_cast<const float*>(as);
    const float* bf = reinterpret_cast<const float*>(bs);
    constexpr int SA = Cfg::A_LD / 4, SB = Cfg::B_LD / 4;
    const int k = ks * 8 + t;
#pragma unroll
    for (int mi = 0; mi < Cfg::MI; ++mi) {
      const float* r = af + (wm0 + mi * 16 + g) * SA + k;
      f.a[mi][0] = tc_to_tf32(r[0]);
      f.a[mi][1] = tc_to_tf32(r[8 * SA]);
      f.a[mi][2] = tc_to_tf32(r[4]);
      f.a[mi][3] = tc_to_tf32(r[8 * SA + 4]);
    }
#pragma unroll
    for (int ni = 0; ni < Cfg::NI; ++ni) {
      const int n = wn0 + ni * 8 + g;
      if (B_KMAJOR) {
        f.b[ni][0] = tc_to_tf32(bf[n * SB + k]);
        f.b[ni][1] = tc_to_tf32(bf[n * SB + k + 4]);
      } else {
        f.b[ni][0] = tc_to_tf32(bf[k * SB + n]);
        f.b[ni][1] = tc_to_tf32(bf[(k + 4) * SB + n]);
      }
    }
  }
}

// --- the tile -------------------------------------------------------------------

// acc += A[m0:m0+BM, :] @ B[:, n0:n0+BN] over all of K (a: [M, K]; b: [N, K]
// when B_KMAJOR else [K, N]). All 256 threads enter and leave together; smem is
// free again on return.
template <class K, int BM, int BN, bool B_KMAJOR>
__device__ __forceinline__ void tc_gemm_tile(
    float (&acc)[TcCfg<K, BM, BN, B_KMAJOR>::MI][TcCfg<K, BM, BN, B_KMAJOR>::NI][4],
    const typename K::G* a, const typename K::G* b, int M, int N, int Kd, int m0,
    int n0, char* smem) {
  typedef TcCfg<K, BM, BN, B_KMAJOR> Cfg;
  constexpr int BK = Cfg::BK, STAGES = Cfg::STAGES;
  constexpr int EPC = 16 / K::E;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm0 = (warp / Cfg::WN) * (BM / Cfg::WM);
  const int wn0 = (warp % Cfg::WN) * (BN / Cfg::WN);
  const bool a_vec = tc_aligned16(a) && Kd % EPC == 0;
  const bool b_vec = tc_aligned16(b) && (B_KMAJOR ? Kd : N) % EPC == 0;
  const int ktiles = (Kd + BK - 1) / BK;

#pragma unroll
  for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
    for (int ni = 0; ni < Cfg::NI; ++ni)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[mi][ni][j] = 0.f;

  auto load_stage = [&](int stage, int kt) {
    char* as = smem + stage * Cfg::STAGE_BYTES;
    char* bs = as + Cfg::A_BYTES;
    const int k0 = kt * BK;
    tc_copy_block<K, BM, 4>(as, Cfg::A_LD, a, m0, k0, M, Kd, a_vec, tid);
    if (B_KMAJOR) {
      tc_copy_block<K, BN, 4>(bs, Cfg::B_LD, b, n0, k0, N, Kd, b_vec, tid);
    } else {
      tc_copy_block<K, BK, BN * K::E / 16>(bs, Cfg::B_LD, b, k0, n0, Kd, N, b_vec,
                                           tid);
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    tc_cp_commit();
  }
#pragma unroll 1
  for (int kt = 0; kt < ktiles; ++kt) {
    tc_cp_wait<STAGES - 2>();  // k-tile kt has landed (this thread's copies)
    __syncthreads();           // ... everyone's; stage (kt - 1) % STAGES is free
    const int next = kt + STAGES - 1;
    if (next < ktiles) load_stage(next % STAGES, next);
    tc_cp_commit();
    const char* as = smem + (kt % STAGES) * Cfg::STAGE_BYTES;
    const char* bs = as + Cfg::A_BYTES;
#pragma unroll
    for (int ks = 0; ks < BK / K::KS; ++ks) {
      TcFrags<Cfg, K> f;
      tc_load_frags<Cfg, K, B_KMAJOR>(f, as, bs, wm0, wn0, ks, lane);
#pragma unroll
      for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Cfg::NI; ++ni) tc_mma<K>(acc[mi][ni], f.a[mi], f.b[ni]);
    }
  }
  tc_cp_wait<0>();
  __syncthreads();  // smem free for whatever the CTA runs next
}

// --- epilogue -------------------------------------------------------------------

// y[row, col] = act(scale * acc + bias[col]) rounded to K::G, for the tile at
// (m0, n0) of a row-major [M, N] y; bias may be null.
template <class K, int BM, int BN, bool B_KMAJOR>
__device__ __forceinline__ void tc_store_tile(
    const float (&acc)[TcCfg<K, BM, BN, B_KMAJOR>::MI][TcCfg<K, BM, BN, B_KMAJOR>::NI]
                      [4],
    typename K::G* y, const typename K::G* bias, int M, int N, int m0, int n0,
    float scale, int act) {
  typedef TcCfg<K, BM, BN, B_KMAJOR> Cfg;
  typedef typename K::G G;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = m0 + (warp / Cfg::WN) * (BM / Cfg::WM) + g;
  const int col0 = n0 + (warp % Cfg::WN) * (BN / Cfg::WN) + 2 * t;
  const bool pairs = (N & 1) == 0 &&
                     (reinterpret_cast<unsigned long long>(y) & (2 * K::E - 1)) == 0;
#pragma unroll
  for (int ni = 0; ni < Cfg::NI; ++ni) {
    const int col = col0 + ni * 8;
    float b0 = 0.f, b1 = 0.f;
    if (bias != nullptr) {
      if (col < N) b0 = K::to_f32(bias[col]);
      if (col + 1 < N) b1 = K::to_f32(bias[col + 1]);
    }
#pragma unroll
    for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + mi * 16 + h * 8;
        if (row >= M || col >= N) continue;
        float v0 = acc[mi][ni][2 * h] * scale, v1 = acc[mi][ni][2 * h + 1] * scale;
        if (bias != nullptr) {
          v0 += b0;
          v1 += b1;
        }
        const G o0 = K::from_f32(reef_act(v0, act));
        const G o1 = K::from_f32(reef_act(v1, act));
        G* p = y + (long long)row * N + col;
        if (pairs && col + 1 < N) {
          if constexpr (K::E == 4) {
            *reinterpret_cast<float2*>(p) = make_float2(o0, o1);
          } else {
            *reinterpret_cast<unsigned*>(p) =
                (unsigned)o0 | ((unsigned)o1 << 16);
          }
        } else {
          p[0] = o0;
          if (col + 1 < N) p[1] = o1;
        }
      }
  }
}

// One virtual block of a batched GEMM: vb = (batch index * tiles_m + tile row)
// * tiles_n + tile column; a, b, y advance by one matrix per batch index.
template <class K, int BM, int BN, bool B_KMAJOR>
__device__ __forceinline__ void tc_gemm_vb(int vb, const typename K::G* a,
                                           const typename K::G* b, typename K::G* y,
                                           const typename K::G* bias, int M, int N,
                                           int Kd, float scale, int act, char* smem) {
  typedef TcCfg<K, BM, BN, B_KMAJOR> Cfg;
  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int bi = vb / (tiles_m * tiles_n);
  const int r = vb % (tiles_m * tiles_n);
  const int m0 = (r / tiles_n) * BM, n0 = (r % tiles_n) * BN;
  const long long mk = (long long)M * Kd, nk = (long long)N * Kd;
  const long long mn = (long long)M * N;
  float acc[Cfg::MI][Cfg::NI][4];
  tc_gemm_tile<K, BM, BN, B_KMAJOR>(acc, a + bi * mk, b + bi * nk, M, N, Kd, m0, n0,
                                    smem);
  tc_store_tile<K, BM, BN, B_KMAJOR>(acc, y + bi * mn, bias, M, N, m0, n0, scale,
                                     act);
}

// --- implicit-GEMM convolution (NCHW) ---------------------------------------------
//
// Per group g: Y_g[co, p] = W_g[co, kk] @ X_g[kk, p], with co the group's output
// channels (the tile's M), p = (image, oh, ow) the output pixels (N) and kk =
// (ci, r, s) the reduction in torch's weight order, so W_g is a k-contiguous
// [cog, Kg] matrix: A goes through tc_copy_block as in tc_gemm_tile. B is
// gathered from x into the n-contiguous layout of TcCfg<K, BM, BN, false>
// ([BK][BN * E + pad], fragments by ldmatrix.trans / LDS as bmm's [K, N] B):
// thread tid owns pixel column tid % BN for the whole k loop and k rows tid / BN
// + j * (256 / BN) of every stage. A table kk -> (x offset of (ci, r, s) from the
// pixel's corner, r * dh, s * dw) in smem after the stages ([2][BK] int4, tile t
// in slot t & 1, written by BK threads one tile before it is gathered) spares
// the gather all divisions; rows past Kg and pixels past the end get a
// displacement that fails the bounds check (zero fill). tf32 gathers with 4-byte
// cp.async, so B rides the same STAGES-deep pipeline as A; halves load into
// registers when a stage is issued and store them after that iteration's MMAs.
// One virtual block is one BM x BN tile of one group: vb = (g * tiles_p + tp) *
// tiles_co + tc (channel tiles fastest, so neighbours share the gathered pixels).
// Epilogue: y[nb, g * cog + co, q] = act(acc + bias) rounded once, pairs of
// pixels as one store when OH * OW is even and y aligned. Shared memory:
// TcCfg<K, BM, BN, false>::SMEM_BYTES + 2 * BK * 16 (tc_conv_smem_bytes).
// Args: any conv args struct (conv2d, conv2d_f16, conv2d_bf16 fields).

#define TC_CONV_FAR (1 << 29)  // a displacement that puts a row out of bounds

template <class K, int BM, int BN>
struct TcConvCfg {
  typedef TcCfg<K, BM, BN, false> Cfg;
  static constexpr int BK = Cfg::BK;
  static constexpr int KSTEP = REEF_CTA_THREADS / BN;  // k rows per gather pass
  static constexpr int PER = BK / KSTEP;  // gathered elements per thread, stage
  static constexpr int TABLE_OFFSET = Cfg::SMEM_BYTES;
  static constexpr int SMEM_BYTES = Cfg::SMEM_BYTES + 2 * BK * 16;
  static_assert(REEF_CTA_THREADS % BN == 0 && BK % KSTEP == 0, "gather split");
  static_assert(Cfg::STAGES == 3, "the table is written one tile ahead of use");
  static_assert(2 * BK <= REEF_CTA_THREADS, "table built in one pass");
};

__device__ __forceinline__ int tc_conv_out(int size, int k, int stride, int pad,
                                           int dil) {
  return (size + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// 4 bytes global -> shared (cp.async.ca); src_bytes 0 writes a zero.
__device__ __forceinline__ void tc_cp_async4(void* dst, const void* src,
                                             int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(
                   tc_smem_addr(dst)),
               "l"(src), "r"(src_bytes)
               : "memory");
}

// Table entry of reduction index kk: (x offset of (ci, r, s) relative to the
// pixel's (ih0, iw0), r * dh, s * dw); past the reduction, -FAR rows.
template <class Args>
__device__ __forceinline__ int4 tc_conv_entry(int kk, const Args& a) {
  const int khw = a.kh * a.kw;
  if (kk >= (a.c_in / a.groups) * khw) return make_int4(0, -TC_CONV_FAR, 0, 0);
  const int ci = kk / khw;
  const int rs = kk - ci * khw;
  const int r = rs / a.kw;
  const int s = rs - r * a.kw;
  const int rd = r * a.dilation_0, sd = s * a.dilation_1;
  return make_int4(ci * a.h * a.w_ + rd * a.w_ + sd, rd, sd, 0);
}

template <class K, int BM, int BN, int ACT, class Args>
__device__ __forceinline__ void tc_conv_vb(int vb, const Args& a, char* smem) {
  typedef TcConvCfg<K, BM, BN> CC;
  typedef typename CC::Cfg Cfg;
  typedef typename K::G G;
  constexpr int BK = Cfg::BK, STAGES = Cfg::STAGES, E = K::E;
  constexpr int KSTEP = CC::KSTEP, PER = CC::PER;
  const int H = a.h, W = a.w_, CO = a.c_out, groups = a.groups;
  const int OH = tc_conv_out(H, a.kh, a.stride_0, a.padding_0, a.dilation_0);
  const int OW = tc_conv_out(W, a.kw, a.stride_1, a.padding_1, a.dilation_1);
  const int OHW = OH * OW;
  const int cig = a.c_in / groups, cog = CO / groups, Kg = cig * a.kh * a.kw;
  const int npix = a.n * OHW;
  const int tiles_co = (cog + BM - 1) / BM, tiles_p = (npix + BN - 1) / BN;
  const int tc = vb % tiles_co;
  const int gp = vb / tiles_co;
  const int tp = gp % tiles_p;
  const int g = gp / tiles_p;
  const int m0 = tc * BM, n0 = tp * BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm0 = (warp / Cfg::WN) * (BM / Cfg::WM);
  const int wn0 = (warp % Cfg::WN) * (BN / Cfg::WN);
  int4* table = reinterpret_cast<int4*>(smem + CC::TABLE_OFFSET);  // [2][BK]

  const G* wg = a.w + (long long)g * cog * Kg;
  const bool a_vec = tc_aligned16(wg) && Kg % (16 / E) == 0;

  // This thread's gather column: one output pixel for the whole k loop.
  const int col = tid % BN, krow = tid / BN;
  int ih0 = -TC_CONV_FAR, iw0 = 0, pbase = 0;
  const G* xb = a.x;
  {
    const int p = n0 + col;
    if (p < npix) {
      const int nb = p / OHW;
      const int q = p - nb * OHW;
      const int oh = q / OW;
      const int ow = q - oh * OW;
      ih0 = oh * a.stride_0 - a.padding_0;
      iw0 = ow * a.stride_1 - a.padding_1;
      xb += ((long long)nb * a.c_in + (long long)g * cig) * H * W;
      pbase = ih0 * W + iw0;  // only used when (ih, iw) is inside
    }
  }
  const int ktiles = (Kg + BK - 1) / BK;

  float acc[Cfg::MI][Cfg::NI][4];
#pragma unroll
  for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
    for (int ni = 0; ni < Cfg::NI; ++ni)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[mi][ni][j] = 0.f;

  // Halves: this thread's share of the stage in flight, two k rows a word.
  unsigned rb[E == 2 ? PER / 2 : 1];
  (void)rb;

  // A of k-tile kt into `stage` (cp.async), and B from table slot kt & 1:
  // tf32 by cp.async, halves into rb (store_b writes them).
  auto issue = [&](int stage, int kt) {
    char* as = smem + stage * Cfg::STAGE_BYTES;
    tc_copy_block<K, BM, 4>(as, Cfg::A_LD, wg, m0, kt * BK, cog, Kg, a_vec, tid);
    char* bs = as + Cfg::A_BYTES;
    const int4* tb = table + (kt & 1) * BK;
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      const int kr = krow + j * KSTEP;
      const int4 e = tb[kr];
      const bool in = (unsigned)(ih0 + e.y) < (unsigned)H &&
                      (unsigned)(iw0 + e.z) < (unsigned)W;
      const G* src = xb + (pbase + e.x);
      if constexpr (E == 4) {
        tc_cp_async4(bs + kr * Cfg::B_LD + col * E, in ? src : xb, in ? 4 : 0);
      } else {
        const unsigned v = in ? __ldg(src) : 0u;
        rb[j / 2] = j % 2 ? rb[j / 2] | (v << 16) : v;
      }
    }
  };
  auto store_b = [&](int stage) {
    if constexpr (E == 2) {
      char* bs = smem + stage * Cfg::STAGE_BYTES + Cfg::A_BYTES;
#pragma unroll
      for (int j = 0; j < PER; ++j)
        *reinterpret_cast<G*>(bs + (krow + j * KSTEP) * Cfg::B_LD + col * E) =
            (G)(j % 2 ? rb[j / 2] >> 16 : rb[j / 2]);
    }
  };

  // Tables of tiles 0 and 1, the first STAGES - 1 stages, then tile 2's table
  // into slot 0 once everyone has gathered tile 0.
  if (tid < 2 * BK) table[tid] = tc_conv_entry(tid, a);
  __syncthreads();
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) {
      issue(s, s);
      store_b(s);
    }
    tc_cp_commit();
  }
  __syncthreads();
  if (tid < BK) table[tid] = tc_conv_entry(2 * BK + tid, a);

#pragma unroll 1
  for (int kt = 0; kt < ktiles; ++kt) {
    tc_cp_wait<STAGES - 2>();  // k-tile kt has landed (this thread's copies)
    __syncthreads();           // ... everyone's; stage (kt - 1) % STAGES is free
    const int next = kt + STAGES - 1;
    const bool more = next < ktiles;
    if (more) issue(next % STAGES, next);
    tc_cp_commit();
    // Tile kt + 3's table into the slot tile kt + 1 used (gathered before the
    // barrier above); it is gathered after the next barrier.
    if (kt + STAGES < ktiles && tid < BK)
      table[((kt + STAGES) & 1) * BK + tid] =
          tc_conv_entry((kt + STAGES) * BK + tid, a);
    const char* as = smem + (kt % STAGES) * Cfg::STAGE_BYTES;
    const char* bs = as + Cfg::A_BYTES;
#pragma unroll
    for (int ks = 0; ks < BK / K::KS; ++ks) {
      TcFrags<Cfg, K> f;
      tc_load_frags<Cfg, K, false>(f, as, bs, wm0, wn0, ks, lane);
#pragma unroll
      for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < Cfg::NI; ++ni) tc_mma<K>(acc[mi][ni], f.a[mi], f.b[ni]);
    }
    if (more) store_b(next % STAGES);
  }
  tc_cp_wait<0>();
  __syncthreads();  // smem free for whatever the CTA runs next

  // Epilogue: this thread's pixels pcol0 + 8 ni (+ 1) at channels co.
  const G* bias = a.bias;
  G* y = a.y;
  const int gq = lane >> 2, t4 = lane & 3;
  const int pcol0 = n0 + wn0 + 2 * t4;
  const bool pairs = (OHW & 1) == 0 &&
                     (reinterpret_cast<unsigned long long>(y) & (2 * E - 1)) == 0;
  long long ob[Cfg::NI][2];  // y offset of each pixel at channel 0, -1 past the end
#pragma unroll
  for (int ni = 0; ni < Cfg::NI; ++ni)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int p = pcol0 + ni * 8 + j;
      if (p < npix) {
        const int nb = p / OHW;
        ob[ni][j] = (long long)nb * CO * OHW + (p - nb * OHW);
      } else {
        ob[ni][j] = -1;
      }
    }
#pragma unroll
  for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int co = m0 + wm0 + mi * 16 + h * 8 + gq;
      if (co >= cog) continue;
      const int ch = g * cog + co;
      const float b = bias != nullptr ? K::to_f32(bias[ch]) : 0.f;
      const long long choff = (long long)ch * OHW;
#pragma unroll
      for (int ni = 0; ni < Cfg::NI; ++ni) {
        float v0 = acc[mi][ni][2 * h], v1 = acc[mi][ni][2 * h + 1];
        if (bias != nullptr) {
          v0 += b;
          v1 += b;
        }
        const G o0 = K::from_f32(reef_act(v0, ACT));
        const G o1 = K::from_f32(reef_act(v1, ACT));
        if (pairs && ob[ni][1] >= 0) {  // p even, OHW even: p + 1 in p's image
          G* dst = y + ob[ni][0] + choff;
          if constexpr (E == 4) {
            *reinterpret_cast<float2*>(dst) = make_float2(o0, o1);
          } else {
            *reinterpret_cast<unsigned*>(dst) = (unsigned)o0 | ((unsigned)o1 << 16);
          }
        } else {
          if (ob[ni][0] >= 0) y[ob[ni][0] + choff] = o0;
          if (ob[ni][1] >= 0) y[ob[ni][1] + choff] = o1;
        }
      }
    }
}

#endif  // REEF_TC_GEMM_CUH
