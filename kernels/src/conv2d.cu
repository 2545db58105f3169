// conv2d.cu: y = act(conv2d(x, w, bias)), NCHW float32, grouped and dilated.
//
// Two bodies (spec.variant in ops_conv.py picks one per shape):
//   conv2d_body<BM, BN, BK>   implicit GEMM per group: Y_g[co, p] = W_g[co, kk] *
//                             X_g[kk, p] with co the group's output channels, p =
//                             (image, oh, ow) the output pixels and kk = (ci, r, s)
//                             the reduction (torch's weight order, so W_g rows are
//                             contiguous). One virtual block is one BM (channels) x
//                             BN (pixels) tile: vb = (g * tiles_p + tp) * tiles_co
//                             + tc. The pixel tile is gathered from x through a
//                             per-k-tile table kk -> (offset, r*dh, s*dw) that a
//                             few threads build one tile ahead, so the gather
//                             needs no divisions. Same 16 x 16 thread layout and
//                             double buffering as linear_body.
//   conv2d_direct_body<KH, KW>  grouped convs with few channels per group
//                             (depthwise included): 4096 outputs per virtual block
//                             (flat NCHW order), 16 per thread, 256 apart; KH, KW
//                             compile-time (0 = read from the args).
#ifndef REEF_CONV2D_CU
#define REEF_CONV2D_CU

#include "reef_common.cuh"

#define CONV_FAR (1 << 29)  // an offset that puts a row index out of bounds

__device__ __forceinline__ bool conv_aligned(const void* p, unsigned bytes) {
  return (reinterpret_cast<unsigned long long>(p) & (bytes - 1)) == 0;
}

__device__ __forceinline__ int conv_out_size(int size, int k, int stride, int pad,
                                             int dil) {
  return (size + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

template <int BM, int BN, int BK>
struct ConvTile {
  static constexpr int TM = BM / 16;
  static constexpr int TN = BN / 16;
  static constexpr int VM = TM < 4 ? TM : 4;
  static constexpr int VN = TN < 4 ? TN : 4;
  static constexpr int SA = BM + 4;
  static constexpr int SB = BN + 4;
  static constexpr int A_CHUNKS = BM * BK / 4;  // float4 chunks of a W k-tile
  static constexpr int A_PER = (A_CHUNKS + 255) / 256;
  static constexpr int KSTEP = 256 / BN;  // k rows gathered per pass
  static constexpr int B_PER = BK / KSTEP;  // gathered elements per thread
  static constexpr int SMEM_FLOATS = 2 * BK * (SA + SB);
  static_assert(BM % 16 == 0 && BN % 16 == 0, "tile must be 16 x 16 threads");
  static_assert(TM == 2 || TM == 4 || TM == 8, "TM in 2, 4, 8");
  static_assert(TN == 2 || TN == 4 || TN == 8, "TN in 2, 4, 8");
  static_assert(256 % BN == 0 && BK % KSTEP == 0 && B_PER >= 1, "gather split");
  static_assert(A_CHUNKS % 256 == 0 || A_CHUNKS < 256, "A chunks");
  static_assert(BK <= 32, "table built by one warp");
};

__device__ __forceinline__ float4 conv_load4(const float* __restrict__ base,
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

template <int V>
__device__ __forceinline__ void conv_lds(float* dst, const float* src) {
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

template <int BM, int BN, int BK>
__device__ void conv2d_body(int vb, const conv2d_args& a, char* smem) {
  using T = ConvTile<BM, BN, BK>;
  constexpr int TM = T::TM, TN = T::TN, VM = T::VM, VN = T::VN;
  constexpr int SA = T::SA, SB = T::SB;
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
  const int tx = tid & 15, ty = tid >> 4;

  float* As = reinterpret_cast<float*>(smem);  // [2][BK][SA]  weights^T
  float* Bs = As + 2 * BK * SA;                 // [2][BK][SB]  gathered x
  int4* table = reinterpret_cast<int4*>(Bs + 2 * BK * SB);  // [2][BK]

  const float* __restrict__ wg = a.w + (long long)g * cog * Kg;
  const bool vec = (Kg & 3) == 0 && conv_aligned(a.w, 16);

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
    table[tid - 32 + BK] =
        conv_table_entry(tid - 32 + BK, a);
  }
  __syncthreads();

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  float4 ra[T::A_PER];
  float rb[T::B_PER];

  auto fetch = [&](int t) {
    const int k0 = t * BK;
#pragma unroll
    for (int i = 0; i < T::A_PER; ++i) {
      const int c = tid + 256 * i;
      if (T::A_CHUNKS % 256 == 0 || c < T::A_CHUNKS) {
        ra[i] = conv_load4(wg, cog, m0 + c / (BK / 4), k0 + (c % (BK / 4)) * 4,
                           Kg, vec);
      }
    }
    const int4* tb = table + (t & 1) * BK;
#pragma unroll
    for (int j = 0; j < T::B_PER; ++j) {
      const int4 e = tb[krow + j * T::KSTEP];
      const int ih = ih0 + e.y;
      const int iw = iw0 + e.z;
      rb[j] = ((unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
                  ? __ldg(xb + (pbase + e.x))
                  : 0.f;
    }
  };
  auto stash = [&](int buf) {
    float* as = As + buf * BK * SA;
#pragma unroll
    for (int i = 0; i < T::A_PER; ++i) {
      const int c = tid + 256 * i;
      if (T::A_CHUNKS % 256 == 0 || c < T::A_CHUNKS) {
        const int row = c / (BK / 4);
        const int kq = (c % (BK / 4)) * 4;
        as[(kq + 0) * SA + row] = ra[i].x;
        as[(kq + 1) * SA + row] = ra[i].y;
        as[(kq + 2) * SA + row] = ra[i].z;
        as[(kq + 3) * SA + row] = ra[i].w;
      }
    }
    float* bs = Bs + buf * BK * SB;
#pragma unroll
    for (int j = 0; j < T::B_PER; ++j) bs[(krow + j * T::KSTEP) * SB + col] = rb[j];
  };

  fetch(0);
  stash(0);
  __syncthreads();

  for (int t = 0; t < ktiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < ktiles;
    if (more) fetch(t + 1);
    // Table for tile t + 2 into the slot tile t used (read before the last
    // barrier); it is read after the barrier that ends this iteration.
    if (t + 2 < ktiles && tid < BK) {
      table[cur * BK + tid] =
          conv_table_entry((t + 2) * BK + tid, a);
    }
    const float* as = As + cur * BK * SA;
    const float* bs = Bs + cur * BK * SB;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float fa[TM], fb[TN];
#pragma unroll
      for (int gi = 0; gi < TM / VM; ++gi)
        conv_lds<VM>(fa + gi * VM, as + kk * SA + gi * 16 * VM + ty * VM);
#pragma unroll
      for (int h = 0; h < TN / VN; ++h)
        conv_lds<VN>(fb + h * VN, bs + kk * SB + h * 16 * VN + tx * VN);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
    }
    if (more) stash(cur ^ 1);
    __syncthreads();
  }

  // Epilogue: y[nb, g * cog + co, q] for this thread's TM channels x TN pixels.
  const float* bias = a.bias;
  const int act = a.act;
  const bool vec_out = (OHW % VN) == 0 && conv_aligned(a.y, 4 * VN);
  float* __restrict__ y = a.y;
#pragma unroll
  for (int h = 0; h < TN / VN; ++h) {
    const int p0 = n0 + h * 16 * VN + tx * VN;
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
        const int co = m0 + gi * 16 * VM + ty * VM + i;
        if (co < cog) {
          const int ch = g * cog + co;
          const float b = bias != nullptr ? __ldg(bias + ch) : 0.f;
          const long long choff = (long long)ch * OHW;
          float v[VN];
#pragma unroll
          for (int j = 0; j < VN; ++j)
            v[j] = reef_act(acc[gi * VM + i][h * VN + j] + b, act);
          if (full) {
            if (VN == 4) {
              *reinterpret_cast<float4*>(y + ob[0] + choff) =
                  make_float4(v[0], v[1], v[VN > 2 ? 2 : 0], v[VN > 3 ? 3 : 0]);
            } else {
              *reinterpret_cast<float2*>(y + ob[0] + choff) = make_float2(v[0], v[1]);
            }
          } else {
#pragma unroll
            for (int j = 0; j < VN; ++j)
              if (ob[j] >= 0) y[ob[j] + choff] = v[j];
          }
        }
      }
  }
}

// --- direct: few channels per group --------------------------------------------

#define CONV_DIRECT_PER_THREAD 16

template <int KH_, int KW_>
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
  const int act = a.act;

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
      a.y[o] = reef_act(acc, act);
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
