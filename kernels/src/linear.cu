// linear.cu: y[m, n] = act(x[m, k] @ w[n, k]^T + bias[n]), float32.
//
// Two bodies (spec.variant in ops_linear.py picks one per shape):
//   linear_body<BM, BN, BK>   shared-memory tiled SGEMM; one virtual block is one
//                             BM x BN tile of y (row-major over tiles, n fastest);
//                             16 x 16 threads, each a (BM/16) x (BN/16) micro-tile;
//                             register-staged double buffering, one barrier per
//                             k-tile; smem = 2 * BK * (BM + 4 + BN + 4) floats.
//   linear_gemv_body<MR, NC>  m <= MR (MR in 1, 2, 4, 8): one virtual block is NC
//                             columns of y for all m rows; the 256 threads split k
//                             (float4 steps), then a butterfly warp reduction and
//                             8 partials per value in smem (8 * MR * NC floats).
// Bounds are checked everywhere (zero-filled loads, guarded stores); 16-byte
// vector loads/stores are used only when k (or n) and the pointers allow them.
#ifndef REEF_LINEAR_CU
#define REEF_LINEAR_CU

#include "reef_common.cuh"

__device__ __forceinline__ bool lin_aligned(const void* p, unsigned bytes) {
  return (reinterpret_cast<unsigned long long>(p) & (bytes - 1)) == 0;
}

// Four consecutive k of one row of a [rows, K] k-contiguous matrix, zero outside.
__device__ __forceinline__ float4 lin_load4(const float* __restrict__ base,
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
struct LinTile {
  static constexpr int TM = BM / 16;  // rows per thread
  static constexpr int TN = BN / 16;  // cols per thread
  static constexpr int VM = TM < 4 ? TM : 4;  // fragment vector width
  static constexpr int VN = TN < 4 ? TN : 4;
  static constexpr int GM = TM / VM;  // fragment groups, 16 * VM rows apart
  static constexpr int GN = TN / VN;
  static constexpr int SA = BM + 4;  // smem row strides (floats), padded
  static constexpr int SB = BN + 4;
  static constexpr int A_CHUNKS = BM * BK / 4;  // float4 chunks per k-tile
  static constexpr int B_CHUNKS = BN * BK / 4;
  static constexpr int A_PER = (A_CHUNKS + 255) / 256;
  static constexpr int B_PER = (B_CHUNKS + 255) / 256;
  static_assert(BM % 16 == 0 && BN % 16 == 0, "tile must be 16 x 16 threads");
  static_assert(TM == 2 || TM == 4 || TM == 8, "TM in 2, 4, 8");
  static_assert(TN == 2 || TN == 4 || TN == 8, "TN in 2, 4, 8");
  static_assert(BK % 4 == 0 && BK <= 32, "BK multiple of 4, at most 32");
  static_assert(A_CHUNKS % 256 == 0 || A_CHUNKS < 256, "A chunks");
  static_assert(B_CHUNKS % 256 == 0 || B_CHUNKS < 256, "B chunks");
};

// Load one k-tile of a [rows, K] k-contiguous operand into registers.
template <int CHUNKS, int PER, int BK>
__device__ __forceinline__ void lin_fetch(float4 (&r)[PER],
                                          const float* __restrict__ base,
                                          int rows, int row0, int k0, int K,
                                          bool vec, int tid) {
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int c = tid + 256 * i;
    if (CHUNKS % 256 == 0 || c < CHUNKS) {
      const int row = c / (BK / 4);
      const int kq = (c % (BK / 4)) * 4;
      r[i] = lin_load4(base, rows, row0 + row, k0 + kq, K, vec);
    }
  }
}

// Store a fetched k-tile transposed: s[k * S + row].
template <int CHUNKS, int PER, int BK, int S>
__device__ __forceinline__ void lin_stash(const float4 (&r)[PER], float* s,
                                          int tid) {
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

template <int V>
__device__ __forceinline__ void lin_lds(float* dst, const float* src) {
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

template <int BM, int BN, int BK>
__device__ void linear_body(int vb, const linear_args& a, char* smem) {
  using T = LinTile<BM, BN, BK>;
  constexpr int TM = T::TM, TN = T::TN, VM = T::VM, VN = T::VN;
  constexpr int SA = T::SA, SB = T::SB;
  const int M = a.m, N = a.n, K = a.k;
  const int tiles_n = (N + BN - 1) / BN;
  const int m0 = (vb / tiles_n) * BM;
  const int n0 = (vb % tiles_n) * BN;
  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;

  float* As = reinterpret_cast<float*>(smem);  // [2][BK][SA]
  float* Bs = As + 2 * BK * SA;                 // [2][BK][SB]

  const bool vec = (K & 3) == 0 && lin_aligned(a.x, 16) && lin_aligned(a.w, 16);
  const int ktiles = (K + BK - 1) / BK;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  float4 ra[T::A_PER], rb[T::B_PER];
  lin_fetch<T::A_CHUNKS, T::A_PER, BK>(ra, a.x, M, m0, 0, K, vec, tid);
  lin_fetch<T::B_CHUNKS, T::B_PER, BK>(rb, a.w, N, n0, 0, K, vec, tid);
  lin_stash<T::A_CHUNKS, T::A_PER, BK, SA>(ra, As, tid);
  lin_stash<T::B_CHUNKS, T::B_PER, BK, SB>(rb, Bs, tid);
  __syncthreads();

  for (int t = 0; t < ktiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < ktiles;
    if (more) {
      lin_fetch<T::A_CHUNKS, T::A_PER, BK>(ra, a.x, M, m0, (t + 1) * BK, K, vec,
                                           tid);
      lin_fetch<T::B_CHUNKS, T::B_PER, BK>(rb, a.w, N, n0, (t + 1) * BK, K, vec,
                                           tid);
    }
    const float* as = As + cur * BK * SA;
    const float* bs = Bs + cur * BK * SB;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float fa[TM], fb[TN];
#pragma unroll
      for (int g = 0; g < TM / VM; ++g)
        lin_lds<VM>(fa + g * VM, as + kk * SA + g * 16 * VM + ty * VM);
#pragma unroll
      for (int h = 0; h < TN / VN; ++h)
        lin_lds<VN>(fb + h * VN, bs + kk * SB + h * 16 * VN + tx * VN);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
    }
    if (more) {
      lin_stash<T::A_CHUNKS, T::A_PER, BK, SA>(ra, As + (cur ^ 1) * BK * SA, tid);
      lin_stash<T::B_CHUNKS, T::B_PER, BK, SB>(rb, Bs + (cur ^ 1) * BK * SB, tid);
    }
    __syncthreads();
  }

  // Epilogue: bias, activation, guarded (vector where aligned) stores.
  const float* bias = a.bias;
  const int act = a.act;
  const bool vec_out = (N % VN) == 0 && lin_aligned(a.y, 4 * VN);
  float bv[TN];
#pragma unroll
  for (int h = 0; h < TN / VN; ++h)
#pragma unroll
    for (int j = 0; j < VN; ++j) {
      const int col = n0 + h * 16 * VN + tx * VN + j;
      bv[h * VN + j] = (bias != nullptr && col < N) ? __ldg(bias + col) : 0.f;
    }
#pragma unroll
  for (int g = 0; g < TM / VM; ++g)
#pragma unroll
    for (int i = 0; i < VM; ++i) {
      const int row = m0 + g * 16 * VM + ty * VM + i;
      if (row < M) {
        float* yrow = a.y + (long long)row * N;
#pragma unroll
        for (int h = 0; h < TN / VN; ++h) {
          const int col = n0 + h * 16 * VN + tx * VN;
          float v[VN];
#pragma unroll
          for (int j = 0; j < VN; ++j)
            v[j] = reef_act(acc[g * VM + i][h * VN + j] + bv[h * VN + j], act);
          if (vec_out && col + VN <= N) {
            if (VN == 4) {
              *reinterpret_cast<float4*>(yrow + col) =
                  make_float4(v[0], v[1], v[VN > 2 ? 2 : 0], v[VN > 3 ? 3 : 0]);
            } else {
              *reinterpret_cast<float2*>(yrow + col) = make_float2(v[0], v[1]);
            }
          } else {
#pragma unroll
            for (int j = 0; j < VN; ++j)
              if (col + j < N) yrow[col + j] = v[j];
          }
        }
      }
    }
}

// --- skinny: m <= MR --------------------------------------------------------

// Sum V values over the 32 lanes of a warp with V/2 + V/4 + ... shuffles. On
// return lane L holds in v[j] (j < max(V/32, 1)) the total of value index
// lin_bfly_index<V>(L) + j; lanes sharing their low log2(V) bits agree.
template <int V>
__device__ __forceinline__ void lin_butterfly(float (&v)[V], int lane) {
#pragma unroll
  for (int s = 0; s < 5; ++s) {
    const int half = V >> (s + 1);
    if (half >= 1) {
      const bool upper = (lane >> s) & 1;
#pragma unroll
      for (int i = 0; i < (V >> 1); ++i) {
        if (i < half) {
          const float send = upper ? v[i] : v[i + half];
          const float keep = upper ? v[i + half] : v[i];
          v[i] = keep + __shfl_xor_sync(0xffffffffu, send, 1 << s);
        }
      }
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], 1 << s);
    }
  }
}

template <int V>
__device__ __forceinline__ int lin_bfly_index(int lane) {
  int idx = 0;
#pragma unroll
  for (int s = 0; s < 5; ++s)
    if ((V >> (s + 1)) >= 1 && ((lane >> s) & 1)) idx += V >> (s + 1);
  return idx;
}

template <int MR, int NC>
__device__ void linear_gemv_body(int vb, const linear_args& a, char* smem) {
  constexpr int V = MR * NC;
  static_assert(V <= 64 && (V & (V - 1)) == 0, "MR * NC a power of 2 <= 64");
  const int M = a.m, N = a.n, K = a.k;
  const int n0 = vb * NC;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float* red = reinterpret_cast<float*>(smem);  // [8 warps][V]
  const bool vec = (K & 3) == 0 && lin_aligned(a.x, 16) && lin_aligned(a.w, 16);
  const float* bias = a.bias;
  const int act = a.act;

  for (int r0 = 0; r0 < M; r0 += MR) {
    float v[V];
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = 0.f;
#pragma unroll 1
    for (int k = tid * 4; k < K; k += 256 * 4) {
      float4 wv[NC], xv[MR];
#pragma unroll
      for (int c = 0; c < NC; ++c) wv[c] = lin_load4(a.w, N, n0 + c, k, K, vec);
#pragma unroll
      for (int r = 0; r < MR; ++r) xv[r] = lin_load4(a.x, M, r0 + r, k, K, vec);
#pragma unroll
      for (int r = 0; r < MR; ++r)
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          float s = v[r * NC + c];
          s = fmaf(xv[r].x, wv[c].x, s);
          s = fmaf(xv[r].y, wv[c].y, s);
          s = fmaf(xv[r].z, wv[c].z, s);
          s = fmaf(xv[r].w, wv[c].w, s);
          v[r * NC + c] = s;
        }
    }
    lin_butterfly<V>(v, lane);
    const int idx = lin_bfly_index<V>(lane);
    if (V >= 32) {
#pragma unroll
      for (int j = 0; j < (V >= 32 ? V / 32 : 1); ++j) red[warp * V + idx + j] = v[j];
    } else if (lane < V) {
      red[warp * V + idx] = v[0];
    }
    __syncthreads();
    if (tid < V) {
      float s = 0.f;
#pragma unroll
      for (int w = 0; w < 8; ++w) s += red[w * V + tid];
      const int r = r0 + tid / NC, c = n0 + tid % NC;
      if (r < M && c < N) {
        if (bias != nullptr) s += __ldg(bias + c);
        a.y[(long long)r * N + c] = reef_act(s, act);
      }
    }
    __syncthreads();  // red is free again (next row chunk or next body)
  }
}

#endif  // REEF_LINEAR_CU
