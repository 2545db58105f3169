// conv_tc.cu: y = act(conv2d(x, w, bias)) in float16 / bfloat16, NCHW, grouped
// and dilated (kernels conv2d_f16 and conv2d_bf16, ops_conv_tc.py).
//
// Operands are raw 16-bit words (the args structs' `unsigned short*`); bias may be
// null; products and sums in fp32, bias and act in fp32, y rounded to the half
// type once. ACT is the act param's index (kernels/act.py ACTS), a template
// argument so the epilogue compiles only its own activation. Bodies (the spec's
// variant picks one per shape):
//   conv2d_f16_body, conv2d_bf16_body<BM, BN, ACT>
//       implicit GEMM per group on tensor cores: tc_conv_vb in tc_gemm.cuh.
//       Y_g[co, p] = W_g[co, (ci, r, s)] @ X_g[(ci, r, s), p] with co the group's
//       output channels (tile rows), p = (image, oh, ow) the output pixels (tile
//       columns); mma.sync m16n8k16, 3-stage pipeline: weights by cp.async, x
//       gathered through a per-k-tile table into registers one stage ahead.
//       One virtual block is one BM x BN tile of one group: vb = (g * tiles_p +
//       tp) * tiles_co + tc.
//   conv2d_f16_direct_body, conv2d_bf16_direct_body<KH, KW, ACT>
//       grouped convs with few channels per group (depthwise included): 4096
//       outputs per virtual block (flat NCHW order), 16 per thread, 256 apart,
//       one output at a time with an fp32 sum over (ci, r, s); KH, KW
//       compile-time (0 = read from the args). No shared memory.
// Loads are bounds-checked (zero outside x), stores guarded; offsets 64-bit.
#ifndef REEF_CONV_TC_CU
#define REEF_CONV_TC_CU

#include "reef_common.cuh"
#include "tc_gemm.cuh"

template <int BM, int BN, int ACT>
__device__ void conv2d_f16_body(int vb, const conv2d_f16_args& a, char* smem) {
  tc_conv_vb<TcF16, BM, BN, ACT>(vb, a, smem);
}

template <int BM, int BN, int ACT>
__device__ void conv2d_bf16_body(int vb, const conv2d_bf16_args& a, char* smem) {
  tc_conv_vb<TcBf16, BM, BN, ACT>(vb, a, smem);
}

// --- direct: few channels per group ------------------------------------------------

#define CONV_TC_DIRECT_PER_THREAD 16  // ops_conv.DIRECT_OUTPUTS_PER_VB / 256

template <class K, int KH_, int KW_, int ACT, class Args>
__device__ __forceinline__ void conv_tc_direct(int vb, const Args& a) {
  typedef typename K::G G;
  const int C = a.c_in, H = a.h, W = a.w_, CO = a.c_out, G_ = a.groups;
  const int KH = KH_ > 0 ? KH_ : a.kh;
  const int KW = KW_ > 0 ? KW_ : a.kw;
  const int sh = a.stride_0, sw = a.stride_1, ph = a.padding_0, pw = a.padding_1;
  const int dh = a.dilation_0, dw = a.dilation_1;
  const int OH = tc_conv_out(H, KH, sh, ph, dh);
  const int OW = tc_conv_out(W, KW, sw, pw, dw);
  const int cig = C / G_, cog = CO / G_, HW = H * W;
  const long long total = (long long)a.n * CO * OH * OW;
  const G* bias = a.bias;

  // Output index o = ((nb * CO + g * cog + cl) * OH + oh) * OW + ow, stepped by
  // 256 without divisions: the step's digits in each radix, added with carries.
  long long o = (long long)vb * (256 * CONV_TC_DIRECT_PER_THREAD) + threadIdx.x;
  int ow, oh, cl, g, nb;
  {
    const long long t1 = o / OW;
    ow = (int)(o - t1 * OW);
    const long long t2 = t1 / OH;
    oh = (int)(t1 - t2 * OH);
    const long long t3 = t2 / cog;
    cl = (int)(t2 - t3 * cog);
    const long long t4 = t3 / G_;
    g = (int)(t3 - t4 * G_);
    nb = (int)t4;
  }
  const int s_ow = 256 % OW;
  const int s1 = 256 / OW;
  const int s_oh = s1 % OH;
  const int s2 = s1 / OH;
  const int s_cl = s2 % cog;
  const int s3 = s2 / cog;
  const int s_g = s3 % G_;
  const int s_nb = s3 / G_;

#pragma unroll 1
  for (int it = 0; it < CONV_TC_DIRECT_PER_THREAD; ++it) {
    if (o < total) {
      const int co = g * cog + cl;
      const G* xp = a.x + ((long long)nb * C + (long long)g * cig) * HW;
      const G* wp = a.w + (long long)co * cig * KH * KW;
      const int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
      float acc = 0.f;
#pragma unroll 1
      for (int ci = 0; ci < cig; ++ci) {
#pragma unroll
        for (int r = 0; r < KH; ++r) {
          const int ih = ih0 + r * dh;
          if ((unsigned)ih < (unsigned)H) {
            const G* xr = xp + ih * W;
#pragma unroll
            for (int s = 0; s < KW; ++s) {
              const int iw = iw0 + s * dw;
              if ((unsigned)iw < (unsigned)W)
                acc = fmaf(K::to_f32(__ldg(xr + iw)), K::to_f32(__ldg(wp + r * KW + s)),
                           acc);
            }
          }
        }
        xp += HW;
        wp += KH * KW;
      }
      if (bias != nullptr) acc += K::to_f32(__ldg(bias + co));
      a.y[o] = K::from_f32(reef_act(acc, ACT));
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
    c = g >= G_;
    g -= c ? G_ : 0;
    nb += s_nb + c;
  }
}

template <int KH, int KW, int ACT>
__device__ void conv2d_f16_direct_body(int vb, const conv2d_f16_args& a, char* smem) {
  conv_tc_direct<TcF16, KH, KW, ACT>(vb, a);
}

template <int KH, int KW, int ACT>
__device__ void conv2d_bf16_direct_body(int vb, const conv2d_bf16_args& a,
                                        char* smem) {
  conv_tc_direct<TcBf16, KH, KW, ACT>(vb, a);
}

#endif  // REEF_CONV_TC_CU
