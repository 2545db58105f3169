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

#endif  // REEF_TC_GEMM_CUH
