// linear.cu: y[m, n] = act(x[m, k] @ w[n, k]^T + bias[n]), float32.
//
// Three bodies (spec.variant in ops_linear.py picks one per shape and precision;
// ACT is the act param's index in kernels/act.py ACTS, a template argument so
// each epilogue compiles only its own activation):
//   linear_body<BM, BN, BK, ACT>   precision "ieee": the SIMT tiled SGEMM of
//                             simt_gemm.cuh with x as A and w as B (both
//                             k-contiguous, loaded by SimtKRows); one virtual
//                             block is one BM x BN tile of y (row-major over
//                             tiles, n fastest); 16 x 16 threads, each a
//                             (BM/16) x (BN/16) micro-tile; register-staged double
//                             buffering, one barrier per k-tile;
//                             smem = 2 * BK * (BM + 4 + BN + 4) floats.
//   linear_gemv_body<MR, NC, ACT>  m <= MR (MR in 1, 2, 4, 8), at either
//                             precision: one virtual block is NC columns of y for
//                             all m rows; the 256 threads split k (float4 steps),
//                             then a butterfly warp reduction and 8 partials per
//                             value in smem (8 * MR * NC floats).
//   linear_tf32_body<BM, BN, ACT>  precision "tf32", m > 8: the tensor-core tile
//                             of tc_gemm.cuh (mma.sync m16n8k8 tf32, inputs
//                             rounded with cvt.rna, fp32 accumulate) with w as
//                             the k-contiguous B; one virtual block is one BM x BN
//                             tile of y (n fastest); smem as TcCfg<TcTf32, BM, BN,
//                             true>.
// Bounds are checked everywhere (zero-filled loads, guarded stores); 16-byte
// vector loads/stores are used only when k (or n) and the pointers allow them.
#ifndef REEF_LINEAR_CU
#define REEF_LINEAR_CU

#include "reef_common.cuh"
#include "simt_gemm.cuh"
#include "tc_gemm.cuh"

// --- tiled: linear_body ------------------------------------------------------------

// x and w are both k-contiguous: two SimtKRows, fetched and stashed A then B.
template <int BM, int BN, int BK>
struct LinLoader {
  SimtRowsA<BM, BN, BK> x;
  SimtRowsB<BM, BN, BK> w;
  int tid;

  __device__ __forceinline__ void fetch(int t) {
    x.fetch(t, tid);
    w.fetch(t, tid);
  }
  __device__ __forceinline__ void stash(float* as, float* bs) const {
    x.stash(as, tid);
    w.stash(bs, tid);
  }
  __device__ __forceinline__ void step(int) const {}
};

template <int BM, int BN, int BK, int ACT>
__device__ void linear_body(int vb, const linear_args& a, char* smem) {
  typedef SimtTile<BM, BN, BK> T;
  constexpr int TM = T::TM, TN = T::TN, VM = T::VM, VN = T::VN;
  const int M = a.m, N = a.n, K = a.k;
  const int tiles_n = (N + BN - 1) / BN;
  const int m0 = (vb / tiles_n) * BM;
  const int n0 = (vb % tiles_n) * BN;
  const int tid = threadIdx.x;

  const bool vec = (K & 3) == 0 && simt_aligned(a.x, 16) && simt_aligned(a.w, 16);
  float acc[TM][TN];
  simt_zero(acc);
  LinLoader<BM, BN, BK> ld{{a.x, M, m0, K, vec}, {a.w, N, n0, K, vec}, tid};
  simt_gemm_tile<BM, BN, BK>(acc, ld, (K + BK - 1) / BK, smem);

  // Epilogue: bias, activation, guarded (vector where aligned) stores.
  const float* bias = a.bias;
  const bool vec_out = (N % VN) == 0 && simt_aligned(a.y, 4 * VN);
  float bv[TN];
#pragma unroll
  for (int h = 0; h < TN / VN; ++h)
#pragma unroll
    for (int j = 0; j < VN; ++j) {
      const int col = n0 + simt_col<BM, BN, BK>(h, tid) + j;
      bv[h * VN + j] = (bias != nullptr && col < N) ? __ldg(bias + col) : 0.f;
    }
#pragma unroll
  for (int g = 0; g < TM / VM; ++g)
#pragma unroll
    for (int i = 0; i < VM; ++i) {
      const int row = m0 + simt_row<BM, BN, BK>(g, tid) + i;
      if (row < M) {
        float* yrow = a.y + (long long)row * N;
#pragma unroll
        for (int h = 0; h < TN / VN; ++h) {
          const int col = n0 + simt_col<BM, BN, BK>(h, tid);
          float v[VN];
#pragma unroll
          for (int j = 0; j < VN; ++j)
            v[j] = reef_act(acc[g * VM + i][h * VN + j] + bv[h * VN + j], ACT);
          if (vec_out && col + VN <= N) {
            simt_stv<VN>(yrow + col, v);
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

template <int MR, int NC, int ACT>
__device__ void linear_gemv_body(int vb, const linear_args& a, char* smem) {
  constexpr int V = MR * NC;
  static_assert(V <= 64 && (V & (V - 1)) == 0, "MR * NC a power of 2 <= 64");
  const int M = a.m, N = a.n, K = a.k;
  const int n0 = vb * NC;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float* red = reinterpret_cast<float*>(smem);  // [8 warps][V]
  const bool vec = (K & 3) == 0 && simt_aligned(a.x, 16) && simt_aligned(a.w, 16);
  const float* bias = a.bias;

  for (int r0 = 0; r0 < M; r0 += MR) {
    float v[V];
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = 0.f;
#pragma unroll 1
    for (int k = tid * 4; k < K; k += 256 * 4) {
      float4 wv[NC], xv[MR];
#pragma unroll
      for (int c = 0; c < NC; ++c) wv[c] = simt_load4(a.w, N, n0 + c, k, K, vec);
#pragma unroll
      for (int r = 0; r < MR; ++r) xv[r] = simt_load4(a.x, M, r0 + r, k, K, vec);
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
        a.y[(long long)r * N + c] = reef_act(s, ACT);
      }
    }
    __syncthreads();  // red is free again (next row chunk or next body)
  }
}

// --- tensor cores: precision "tf32" ----------------------------------------------

template <int BM, int BN, int ACT>
__device__ void linear_tf32_body(int vb, const linear_args& a, char* smem) {
  tc_gemm_vb<TcTf32, BM, BN, true>(vb, a.x, a.w, a.y, a.bias, a.m, a.n, a.k, 1.0f,
                                   ACT, smem);
}

#endif  // REEF_LINEAR_CU
