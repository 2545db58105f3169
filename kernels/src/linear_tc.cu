// linear_tc.cu: y[m, n] = act(x[m, k] @ w[n, k]^T + bias[n]) in float16 / bfloat16.
//
// Operands are raw 16-bit words (the args structs' `unsigned short*`); bias may be
// null. Bodies linear_f16_body<BM, BN> and linear_bf16_body<BM, BN> (ops_linear_tc
// picks the tile per shape) are the tensor-core tile of tc_gemm.cuh with w as the
// k-contiguous B operand: mma.sync m16n8k16, fp32 accumulate, bias and act in
// fp32, y rounded to the half type once. One virtual block is one BM x BN tile of
// y, row-major over tiles (n fastest); layout, pipeline and guards are described
// in tc_gemm.cuh.
#ifndef REEF_LINEAR_TC_CU
#define REEF_LINEAR_TC_CU

#include "reef_common.cuh"
#include "tc_gemm.cuh"

template <int BM, int BN>
__device__ void linear_f16_body(int vb, const linear_f16_args& args, char* smem) {
  tc_gemm_vb<TcF16, BM, BN, true>(vb, args.x, args.w, args.y, args.bias, args.m,
                                  args.n, args.k, 1.0f, args.act, smem);
}

template <int BM, int BN>
__device__ void linear_bf16_body(int vb, const linear_bf16_args& args, char* smem) {
  tc_gemm_vb<TcBf16, BM, BN, true>(vb, args.x, args.w, args.y, args.bias, args.m,
                                   args.n, args.k, 1.0f, args.act, smem);
}

#endif  // REEF_LINEAR_TC_CU
