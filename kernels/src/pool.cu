// pool.cu: max_pool2d, avg_pool2d and adaptive_avg_pool2d, NCHW float32.
//
// The windowed bodies compute one output per thread, 1024 outputs per virtual
// block (flat NCHW order, 4 per thread, 256 apart so a warp's stores coalesce),
// with exactly the window rules of PyTorch's CUDA kernels:
//   max: padding never wins (windows are clipped; an all-padding window gives
//        -inf), dilation, NaN propagates;
//   avg: torch's clipping and divisor (count_include_pad counts the window
//        clipped to the padded input; divisor_override wins when nonzero);
//   adaptive: rows floor(i * H / OH) .. ceil((i + 1) * H / OH), sum / kh / kw.
// adaptive_avg_pool2d_global_body (out 1 x 1): one warp per (n, c) plane, lanes
// striding the plane, 32 planes per virtual block.
#ifndef REEF_POOL_CU
#define REEF_POOL_CU

#include "reef_common.cuh"

#define POOL_PER_THREAD 4
#define POOL_GLOBAL_PLANES 32

__device__ __forceinline__ int pool_out_size(int size, int k, int stride, int pad,
                                             int dil, int ceil_mode) {
  const int span =
      size + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int out = span / stride + 1;  // span >= 0 for every shape the catalog accepts
  if (ceil_mode && (out - 1) * stride >= size + pad) --out;
  return out;
}

// Position (plane, oh, ow) of flat output o, stepped by 256 without divisions.
struct PoolPos {
  int ow, oh;
  long long plane;
  int s_ow, s_oh;
  long long s_plane;
  int OW, OH;

  __device__ __forceinline__ void init(long long o, int oh_, int ow_) {
    OH = oh_;
    OW = ow_;
    const long long t = o / OW;
    ow = (int)(o - t * OW);
    plane = t / OH;
    oh = (int)(t - plane * OH);
    s_ow = 256 % OW;
    const int s1 = 256 / OW;
    s_oh = s1 % OH;
    s_plane = s1 / OH;
  }
  __device__ __forceinline__ void step() {
    ow += s_ow;
    int c = ow >= OW;
    ow -= c ? OW : 0;
    oh += s_oh + c;
    c = oh >= OH;
    oh -= c ? OH : 0;
    plane += s_plane + c;
  }
};

__device__ void max_pool2d_body(int vb, const max_pool2d_args& a, char* smem) {
  const int H = a.h, W = a.w, kh = a.kernel_0, kw = a.kernel_1;
  const int sh = a.stride_0, sw = a.stride_1, ph = a.padding_0, pw = a.padding_1;
  const int dh = a.dilation_0, dw = a.dilation_1;
  const int OH = pool_out_size(H, kh, sh, ph, dh, a.ceil_mode);
  const int OW = pool_out_size(W, kw, sw, pw, dw, a.ceil_mode);
  const long long total = (long long)a.n * a.c * OH * OW;
  long long o = (long long)vb * (256 * POOL_PER_THREAD) + threadIdx.x;
  PoolPos pos;
  pos.init(o, OH, OW);
  const float neg_inf = __int_as_float(0xff800000);
#pragma unroll 1
  for (int it = 0; it < POOL_PER_THREAD; ++it, o += 256, pos.step()) {
    if (o >= total) break;
    int hstart = pos.oh * sh - ph, wstart = pos.ow * sw - pw;
    const int hend = reef_min(hstart + (kh - 1) * dh + 1, H);
    const int wend = reef_min(wstart + (kw - 1) * dw + 1, W);
    if (hstart < 0) hstart += reef_ceil_div(-hstart, dh) * dh;
    if (wstart < 0) wstart += reef_ceil_div(-wstart, dw) * dw;
    const float* __restrict__ xp = a.x + pos.plane * H * W;
    float m = neg_inf;
    for (int ih = hstart; ih < hend; ih += dh) {
      const float* __restrict__ row = xp + ih * W;
      for (int iw = wstart; iw < wend; iw += dw) {
        const float v = __ldg(row + iw);
        if (v > m || v != v) m = v;
      }
    }
    a.y[o] = m;
  }
}

__device__ void avg_pool2d_body(int vb, const avg_pool2d_args& a, char* smem) {
  const int H = a.h, W = a.w, kh = a.kernel_0, kw = a.kernel_1;
  const int sh = a.stride_0, sw = a.stride_1, ph = a.padding_0, pw = a.padding_1;
  const int OH = pool_out_size(H, kh, sh, ph, 1, a.ceil_mode);
  const int OW = pool_out_size(W, kw, sw, pw, 1, a.ceil_mode);
  const long long total = (long long)a.n * a.c * OH * OW;
  const int include_pad = a.count_include_pad, divisor = a.divisor_override;
  long long o = (long long)vb * (256 * POOL_PER_THREAD) + threadIdx.x;
  PoolPos pos;
  pos.init(o, OH, OW);
#pragma unroll 1
  for (int it = 0; it < POOL_PER_THREAD; ++it, o += 256, pos.step()) {
    if (o >= total) break;
    int hstart = pos.oh * sh - ph, wstart = pos.ow * sw - pw;
    int hend = reef_min(hstart + kh, H + ph);
    int wend = reef_min(wstart + kw, W + pw);
    const int pool_size = (hend - hstart) * (wend - wstart);
    hstart = reef_max(hstart, 0);
    wstart = reef_max(wstart, 0);
    hend = reef_min(hend, H);
    wend = reef_min(wend, W);
    if (hstart >= hend || wstart >= wend) {
      a.y[o] = 0.0f;
      continue;
    }
    const float* __restrict__ xp = a.x + pos.plane * H * W;
    float sum = 0.0f;
    for (int ih = hstart; ih < hend; ++ih) {
      const float* __restrict__ row = xp + ih * W;
      for (int iw = wstart; iw < wend; ++iw) sum += __ldg(row + iw);
    }
    const int div = divisor != 0  ? divisor
                    : include_pad ? pool_size
                                  : (hend - hstart) * (wend - wstart);
    a.y[o] = sum / (float)div;
  }
}

__device__ void adaptive_avg_pool2d_body(int vb, const adaptive_avg_pool2d_args& a,
                                         char* smem) {
  const int H = a.h, W = a.w, OH = a.out_h, OW = a.out_w;
  const long long total = (long long)a.n * a.c * OH * OW;
  long long o = (long long)vb * (256 * POOL_PER_THREAD) + threadIdx.x;
  PoolPos pos;
  pos.init(o, OH, OW);
#pragma unroll 1
  for (int it = 0; it < POOL_PER_THREAD; ++it, o += 256, pos.step()) {
    if (o >= total) break;
    // torch's START_IND / END_IND: floor(i * H / OH), ceil((i + 1) * H / OH).
    const int hstart = (int)(((long long)pos.oh * H) / OH);
    const int hend = (int)(((long long)(pos.oh + 1) * H + OH - 1) / OH);
    const int wstart = (int)(((long long)pos.ow * W) / OW);
    const int wend = (int)(((long long)(pos.ow + 1) * W + OW - 1) / OW);
    const float* __restrict__ xp = a.x + pos.plane * H * W;
    float sum = 0.0f;
    for (int ih = hstart; ih < hend; ++ih) {
      const float* __restrict__ row = xp + ih * W;
      for (int iw = wstart; iw < wend; ++iw) sum += __ldg(row + iw);
    }
    a.y[o] = sum / (float)(hend - hstart) / (float)(wend - wstart);
  }
}

__device__ void adaptive_avg_pool2d_global_body(int vb,
                                                const adaptive_avg_pool2d_args& a,
                                                char* smem) {
  const int HW = a.h * a.w;
  const long long planes = (long long)a.n * a.c;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int PER_WARP = POOL_GLOBAL_PLANES / 8;
#pragma unroll 1
  for (int i = 0; i < PER_WARP; ++i) {
    const long long plane = (long long)vb * POOL_GLOBAL_PLANES + warp * PER_WARP + i;
    if (plane >= planes) break;  // warp-uniform
    const float* __restrict__ xp = a.x + plane * HW;
    float s0 = 0.0f, s1 = 0.0f;
    int k = lane;
    for (; k + 32 < HW; k += 64) {
      s0 += __ldg(xp + k);
      s1 += __ldg(xp + k + 32);
    }
    if (k < HW) s0 += __ldg(xp + k);
    float s = s0 + s1;
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    if (lane == 0) a.y[plane] = s / (float)HW;
  }
}

#endif  // REEF_POOL_CU
