"""Half-precision convolutions on tensor cores: `conv2d_f16` and `conv2d_bf16`.

y = act(conv2d(x, w, bias)), NCHW, grouped and dilated, with every operand
float16 (resp. bfloat16), fp32 accumulation and one rounding of y; the params are
conv2d's without `precision`. Owns their specs, their torch reference (F.conv2d
on the float32 upcasts, act, then one rounding), and the choice of CUDA body per
shape (kernels/src/conv_tc.cu): the implicit GEMM of tc_gemm.cuh's tc_conv_vb
with a tile from ops_linear_tc.TC_TILES, or, for grouped convs with few channels
per group, a direct body in half (the same rule as conv2d's, ops_conv.is_direct).
Imports torch and this package's spec, catalog, act and ops_conv only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from reefd.kernels import catalog
from reefd.kernels.act import ACTS, apply_act
from reefd.kernels.ops_conv import (
    MOBILENET_DEPTHWISE,
    RESNET_DOWNSAMPLE,
    RESNET_LAYER1,
    RESNET_STEM,
    conv_flops,
    conv_shapes,
    conv_tc_smem_bytes,
    conv_tc_tile,
    direct_kernel_size,
    direct_vb_count,
    gemm_dims,
    is_direct,
)
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape


def _shapes(kernel: str) -> Callable[[Params], dict[str, Shape]]:
    def shapes(p: Params) -> dict[str, Shape]:
        return conv_shapes(p, kernel)

    return shapes


def _reference(t: dict[str, torch.Tensor], p: Params) -> None:
    """F.conv2d in float32 from the half inputs, act, one rounding to y's dtype."""
    bias = t.get("bias")
    out = F.conv2d(
        t["x"].float(),
        t["w"].float(),
        None if bias is None else bias.float(),
        stride=p["stride"],
        padding=p["padding"],
        dilation=p["dilation"],
        groups=p["groups"],
    )
    t["y"].copy_(apply_act(out, p["act"]).to(t["y"].dtype))


def _flops(kernel: str) -> Callable[[Params], int]:
    def flops(p: Params) -> int:
        return conv_flops(p, kernel)

    return flops


def _variant(kernel: str) -> Callable[[Params], str]:
    """<kernel>_direct_body<KH, KW, ACT> or <kernel>_body<BM, BN, ACT>."""

    def variant(p: Params) -> str:
        act = ACTS.index(p["act"])
        if is_direct(p):
            kh, kw = direct_kernel_size(p)
            return f"{kernel}_direct_body<{kh}, {kw}, {act}>"
        t = conv_tc_tile(p, kernel)
        return f"{kernel}_body<{t.bm}, {t.bn}, {act}>"

    return variant


def _vb_count(kernel: str) -> Callable[[Params], int]:
    def vb_count(p: Params) -> int:
        if is_direct(p):
            return direct_vb_count(p, kernel)
        rows, cols, groups = gemm_dims(p, kernel)
        return conv_tc_tile(p, kernel).tiles(rows, cols) * groups

    return vb_count


def _smem_bytes(kernel: str, dtype: str) -> Callable[[Params], int]:
    def smem_bytes(p: Params) -> int:
        if is_direct(p):
            return 0
        return conv_tc_smem_bytes(conv_tc_tile(p, kernel), dtype)

    return smem_bytes


def _conv_half(kernel: str, dtype: str) -> KernelSpec:
    dtypes = (dtype,)
    return KernelSpec(
        name=kernel,
        summary=(
            f"2-D convolution, NCHW, grouped and dilated, optional bias and act; "
            f"{dtype} operands, fp32 accumulation (tensor cores), y rounded once"
        ),
        operands=(
            Operand("x", "read", dtypes),
            Operand("w", "read", dtypes),
            Operand("bias", "read", dtypes, optional=True),
            Operand("y", "write", dtypes),
        ),
        params=(
            *(Param(d, "int") for d in ("n", "c_in", "h", "w", "c_out", "kh", "kw")),
            Param("stride", "ints", required=False, default=(1, 1)),
            Param("padding", "ints", required=False, default=(0, 0)),
            Param("dilation", "ints", required=False, default=(1, 1)),
            Param("groups", "int", required=False, default=1),
            Param("act", "str", required=False, default="none", choices=ACTS),
        ),
        shapes=_shapes(kernel),
        reference=_reference,
        flops=_flops(kernel),
        cta_threads=256,
        elems_per_virtual_block=128 * 128,
        source="conv_tc.cu",
        variant=_variant(kernel),
        vb_count=_vb_count(kernel),
        smem_bytes=_smem_bytes(kernel, dtype),
    )


SAMPLE_PARAMS: list[dict] = [
    RESNET_STEM,
    RESNET_LAYER1,
    RESNET_DOWNSAMPLE,
    {**MOBILENET_DEPTHWISE, "act": "relu6"},
]

conv2d_f16 = catalog.register(_conv_half("conv2d_f16", "float16"))
conv2d_bf16 = catalog.register(_conv_half("conv2d_bf16", "bfloat16"))
