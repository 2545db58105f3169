// conv2d.cu: y = act(conv2d(x, w, bias)), NCHW float32, grouped and dilated.
//
// Three bodies (spec.variant in ops_conv.py picks one per shape and precision;
// ACT is the act param's index in kernels/act.py ACTS, a template argument so
// each epilogue compiles only its own activation; ACT = -1 reads the act from
// the args at run time, which conv2d_body uses: templating its epilogue raised
// registers on some tiles (64x128: 82 -> 97) and made a padded pair spill):
//   conv2d_body<BM, BN, BK, ACT>   precision "ieee": implicit GEMM per group on
//                             the SIMT tile of simt_gemm.cuh: Y_g[co, p] =
//                             W_g[co, kk] * X_g[kk, p] with co the group's output
//                             channels, p = (image, oh, ow) the output pixels and
//                             kk = (ci, r, s) the reduction (torch's weight order,
//                             so W_g rows are contiguous: SimtKRows loads them).
//                             One virtual block is one BM (channels) x BN (pixels)
//                             tile: vb = (g * tiles_p + tp) * tiles_co + tc. The
//                             pixel tile is gathered from x through a per-k-tile
//                             table kk -> (offset, r*dh, s*dw) that a few threads
//                             build one tile ahead, so the gather needs no
//                             divisions; thread tid gathers pixel tid % BN, k rows
//                             tid / BN + j * (256 / BN). smem = 2 * BK * (BM + 4 +
//                             BN + 4) floats + the [2][BK] int4 table.
//   conv2d_tf32_body<BM, BN, ACT>  precision "tf32": the same implicit GEMM (same
//                             (ci, r, s) reduction order, same gather table and vb
//                             numbering) on tensor cores, tc_conv_vb in
//                             tc_gemm.cuh (mma.sync m16n8k8 tf32, fp32 accumulate,
//                             3-stage cp.async with 4-byte gathers of x).
//   conv2d_direct_body<KH, KW, ACT>  grouped convs with few channels per group
//                             (depthwise included), at either precision: 4096
//                             outputs per virtual block (flat NCHW order), 16 per
//                             thread, 256 apart; KH, KW compile-time (0 = read
//                             from the args).
#ifndef REEF_CONV2D_CU
#define REEF_CONV2D_CU

#include "reef_common.cuh"
#include "simt_gemm.cuh"
#include "tc_gemm.cuh"

#define CONV_FAR (1 << 29)  // an offset that puts a row index out of bounds

__device__ __forceinline__ int conv_out_size(int size, int k, int stride, int pad,
                                             int dil) {
  return (size + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// Gather table entry for reduction index kk: x offset of (ci, r, s) relative to
// the pixel's (ih0, iw0), and the row / column displacement r*dh, s*dw.
// Indices past the reduction get a displacement that fails the bounds check.
__device__ __forceinline__ int4 conv_table_entry(int kk, const conv2d_args& a) {
  const int khw = a.kh * a.kw, kw = a.kw, W = a.w_, hw = a.h * a.w_;
  const int dh = a.dilation_0, dw = a.dilation_1;
  if (kk >= (a.c_in / a.groups) * khw) return make_int4(0, -CONV_FAR, 0, 0);
  const int ci = kk / khw;
  const int rs = kk - ci * khw;
  const int r = rs / kw;
  const int s = rs - r * kw;
  return make_int4(ci * hw + r * dh * W + s * dw, r * dh, s * dw, 0);
}

template <int BM, int BN, int BK, int ACT>
__device__ void conv2d_body(int vb, const conv2d_args& a, char* smem) {
  typedef SimtTile<BM, BN, BK> T;
  constexpr int TM = T::TM, TN = T::TN, VM = T::VM, VN = T::VN;
  const int C = a.c_in, H = a.h, W = a.w_, CO = a.c_out;
  const int KH = a.kh, KW = a.kw, G = a.groups;
  const int sh = a.stride_0, sw = a.stride_1, ph = a.padding_0, pw = a.padding_1;
  const int dh = a.dilation_0, dw = a.dilation_1;
  const int OH = conv_out_size(H, KH, sh, ph, dh);
  const int OW = conv_out_size(W, KW, sw, pw, dw);
  const int OHW = OH * OW, HW = H * W, khw = KH * KW;
  const int cig = C / G, cog = CO / G, Kg = cig * khw;
  const int npix = a.n * OHW;
  const int tiles_co = (cog + BM - 1) / BM;
  const int tiles_p = (npix + BN - 1) / BN;
  const int tc = vb % tiles_co;
  const int gp = vb / tiles_co;
  const int tp = gp % tiles_p;
  const int g = gp / tiles_p;
  const int m0 = tc * BM, n0 = tp * BN;
  const int tid = threadIdx.x;

  constexpr int KSTEP = 256 / BN;    // k rows gathered per pass
  constexpr int B_PER = BK / KSTEP;  // gathered elements per thread
  constexpr int SB = T::SB;
  static_assert(256 % BN == 0 && BK % KSTEP == 0 && B_PER >= 1, "gather split");
  static_assert(BK <= 32, "table built by one warp");

  // After the two operand buffers: the double-buffered gather table.
  int4* table = reinterpret_cast<int4*>(reinterpret_cast<float*>(smem) +
                                        T::SMEM_FLOATS);  // [2][BK]

  const float* __restrict__ wg = a.w + (long long)g * cog * Kg;
  const bool vec = (Kg & 3) == 0 && simt_aligned(a.w, 16);

  // This thread's gather column: one output pixel for the whole k loop.
  const int col = tid % BN;
  const int krow = tid / BN;
  int ih0 = -CONV_FAR, iw0 = 0, pbase = 0;
  long long xoff = 0;
  {
    const int p = n0 + col;
    if (p < npix) {
      const int nb = p / OHW;
      const int q = p - nb * OHW;
      const int oh = q / OW;
      const int ow = q - oh * OW;
      ih0 = oh * sh - ph;
      iw0 = ow * sw - pw;
      xoff = ((long long)nb * C + (long long)g * cig) * HW;
      pbase = ih0 * W + iw0;  // only used when (ih, iw) is inside
    }
  }
  const float* __restrict__ xb = a.x + xoff;

  const int ktiles = (Kg + BK - 1) / BK;
  if (tid < BK) {
    table[tid] = conv_table_entry(tid, a);
  } else if (tid >= 32 && tid < 32 + BK) {
    table[tid - 32 + BK] = conv_table_entry(tid - 32 + BK, a);
  }
  __syncthreads();

  float acc[TM][TN];
  simt_zero(acc);

  // The loader: W_g through SimtKRows (k-contiguous [cog, Kg]); x gathered, k
  // rows krow + j * KSTEP of each k-tile through table slot t & 1.
  SimtRowsA<BM, BN, BK> wr(wg, cog, m0, Kg, vec);
  float rb[B_PER];
  auto fetch = [&](int t) {
    wr.fetch(t, tid);
    const int4* tb = table + (t & 1) * BK;
#pragma unroll
    for (int j = 0; j < B_PER; ++j) {
      const int4 e = tb[krow + j * KSTEP];
      const int ih = ih0 + e.y;
      const int iw = iw0 + e.z;
      rb[j] = ((unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
                  ? __ldg(xb + (pbase + e.x))
                  : 0.f;
    }
  };
  auto stash = [&](float* as, float* bs) {
    wr.stash(as, tid);
#pragma unroll
    for (int j = 0; j < B_PER; ++j) bs[(krow + j * KSTEP) * SB + col] = rb[j];
  };
  // Table for tile t + 2 into the slot tile t used (read before the last
  // barrier); it is read after the barrier that ends this iteration.
  auto step = [&](int t) {
    if (t + 2 < ktiles && tid < BK)
      table[(t & 1) * BK + tid] = conv_table_entry((t + 2) * BK + tid, a);
  };
  SimtFnLoader<decltype(fetch), decltype(stash), decltype(step)> ld{fetch, stash,
                                                                     step};
  simt_gemm_tile<BM, BN, BK>(acc, ld, ktiles, smem);

  // Epilogue: y[nb, g * cog + co, q] for this thread's TM channels x TN pixels.
  const float* bias = a.bias;
  const bool vec_out = (OHW % VN) == 0 && simt_aligned(a.y, 4 * VN);
  float* __restrict__ y = a.y;
#pragma unroll
  for (int h = 0; h < TN / VN; ++h) {
    const int p0 = n0 + simt_col<BM, BN, BK>(h, tid);
    long long ob[VN];  // y offset of each pixel at channel 0 (-1: past the end)
#pragma unroll
    for (int j = 0; j < VN; ++j) {
      const int p = p0 + j;
      if (p < npix) {
        const int nb = p / OHW;
        ob[j] = (long long)nb * CO * OHW + (p - nb * OHW);
      } else {
        ob[j] = -1;
      }
    }
    const bool full = vec_out && p0 + VN <= npix;
#pragma unroll
    for (int gi = 0; gi < TM / VM; ++gi)
#pragma unroll
      for (int i = 0; i < VM; ++i) {
        const int co = m0 + simt_row<BM, BN, BK>(gi, tid) + i;
        if (co < cog) {
          const int ch = g * cog + co;
          const float b = bias != nullptr ? __ldg(bias + ch) : 0.f;
          const long long choff = (long long)ch * OHW;
          float v[VN];
#pragma unroll
          for (int j = 0; j < VN; ++j)
            v[j] = reef_act(acc[gi * VM + i][h * VN + j] + b, ACT >= 0 ? ACT : a.act);
          if (full) {
            simt_stv<VN>(y + ob[0] + choff, v);
          } else {
#pragma unroll
            for (int j = 0; j < VN; ++j)
              if (ob[j] >= 0) y[ob[j] + choff] = v[j];
          }
        }
      }
  }
}

// --- tensor cores: precision "tf32" ----------------------------------------------

template <int BM, int BN, int ACT>
__device__ void conv2d_tf32_body(int vb, const conv2d_args& a, char* smem) {
  tc_conv_vb<TcTf32, BM, BN, ACT>(vb, a, smem);
}

// --- direct: few channels per group --------------------------------------------

#define CONV_DIRECT_PER_THREAD 16

template <int KH_, int KW_, int ACT>
__device__ void conv2d_direct_body(int vb, const conv2d_args& a, char* smem) {
  const int C = a.c_in, H = a.h, W = a.w_, CO = a.c_out, G = a.groups;
  const int KH = KH_ > 0 ? KH_ : a.kh;
  const int KW = KW_ > 0 ? KW_ : a.kw;
  const int sh = a.stride_0, sw = a.stride_1, ph = a.padding_0, pw = a.padding_1;
  const int dh = a.dilation_0, dw = a.dilation_1;
  const int OH = conv_out_size(H, KH, sh, ph, dh);
  const int OW = conv_out_size(W, KW, sw, pw, dw);
  const int cig = C / G, cog = CO / G, HW = H * W;
  const long long total = (long long)a.n * CO * OH * OW;
  const float* bias = a.bias;

  // Output index o = ((nb * CO + g * cog + cl) * OH + oh) * OW + ow, stepped by
  // 256 without divisions: the step's digits in each radix, added with carries.
  long long o = (long long)vb * (256 * CONV_DIRECT_PER_THREAD) + threadIdx.x;
  int ow, oh, cl, g, nb;
  {
    const long long t1 = o / OW;
    ow = (int)(o - t1 * OW);
    const long long t2 = t1 / OH;
    oh = (int)(t1 - t2 * OH);
    const long long t3 = t2 / cog;
    cl = (int)(t2 - t3 * cog);
    const long long t4 = t3 / G;
    g = (int)(t3 - t4 * G);
    nb = (int)t4;
  }
  const int s_ow = 256 % OW;
  const int s1 = 256 / OW;
  const int s_oh = s1 % OH;
  const int s2 = s1 / OH;
  const int s_cl = s2 % cog;
  const int s3 = s2 / cog;
  const int s_g = s3 % G;
  const int s_nb = s3 / G;

#pragma unroll 1
  for (int it = 0; it < CONV_DIRECT_PER_THREAD; ++it) {
    if (o < total) {
      const int co = g * cog + cl;
      const float* __restrict__ xp = a.x + ((long long)nb * C + g * cig) * HW;
      const float* __restrict__ wp = a.w + (long long)co * cig * KH * KW;
      const int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
      float acc = 0.f;
#pragma unroll 1
      for (int ci = 0; ci < cig; ++ci) {
#pragma unroll
        for (int r = 0; r < KH; ++r) {
          const int ih = ih0 + r * dh;
          if ((unsigned)ih < (unsigned)H) {
            const float* xr = xp + ih * W;
#pragma unroll
            for (int s = 0; s < KW; ++s) {
              const int iw = iw0 + s * dw;
              if ((unsigned)iw < (unsigned)W)
                acc = fmaf(__ldg(xr + iw), __ldg(wp + r * KW + s), acc);
            }
          }
        }
        xp += HW;
        wp += KH * KW;
      }
      if (bias != nullptr) acc += __ldg(bias + co);
      a.y[o] = reef_act(acc, ACT);
    }
    o += 256;
    ow += s_ow;
    int c = ow >= OW;
    ow -= c ? OW : 0;
    oh += s_oh + c;
    c = oh >= OH;
    oh -= c ? OH : 0;
    cl += s_cl + c;
    c = cl >= cog;
    cl -= c ? cog : 0;
    g += s_g + c;
    c = g >= G;
    g -= c ? G : 0;
    nb += s_nb + c;
  }
}

#endif  // REEF_CONV2D_CU
