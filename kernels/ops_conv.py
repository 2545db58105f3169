"""Convolution kernels: `conv2d` (grouped, dilated, bias and activation epilogue).

Owns the conv shape rule (torch's output-size formula, checked strictly; the
half-precision convs of ops_conv_tc share it), the choice of its CUDA body
(kernels/src/conv2d.cu) per shape and precision ("ieee": SIMT fp32 implicit
GEMM; "tf32": the implicit GEMM on tensor cores, tc_gemm.cuh; grouped convs with
few channels per group run the direct body at either precision), and the `pair`
helper that checks two-int params, which the pooling kernels share. Imports
torch, reefd.errors and this package's spec, catalog, act, ops_linear (the GEMM
tile chooser) and ops_linear_tc (the tensor-core tiles) only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reefd.errors import GraphError
from reefd.kernels import catalog
from reefd.kernels.act import ACTS, apply_act
from reefd.kernels.ops_linear import (
    PRECISIONS,
    GemmTile,
    gemm_smem_bytes,
    gemm_tile,
)
from reefd.kernels.ops_linear_tc import tc_smem_bytes, tc_tile
from reefd.kernels.spec import (
    ITEMSIZE_BYTES,
    KernelSpec,
    Operand,
    Param,
    Params,
    Shape,
    positive,
)


def pair(kernel: str, name: str, value: tuple[int, ...], minimum: int) -> Shape:
    """Check that an ints param holds exactly two values, each >= `minimum`."""
    if len(value) != 2 or min(value) < minimum:
        raise GraphError(
            f"kernel {kernel!r}: {name}={list(value)} must be 2 ints >= {minimum}"
        )
    return (value[0], value[1])


def conv_out(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    """Output length along one axis, exactly torch's formula (floor division)."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def out_hw(p: Params, k: str = "conv2d") -> tuple[int, int]:
    """(oh, ow) of a conv call; GraphError naming kernel `k` and the bad param."""
    positive(k, n=p["n"], c_in=p["c_in"], h=p["h"], w=p["w"], c_out=p["c_out"])
    positive(k, kh=p["kh"], kw=p["kw"], groups=p["groups"])
    sh, sw = pair(k, "stride", p["stride"], 1)
    ph, pw = pair(k, "padding", p["padding"], 0)
    dh, dw = pair(k, "dilation", p["dilation"], 1)
    groups = p["groups"]
    if p["c_in"] % groups or p["c_out"] % groups:
        raise GraphError(
            f"kernel {k!r}: groups={groups} must divide c_in={p['c_in']} "
            f"and c_out={p['c_out']}"
        )
    oh = conv_out(p["h"], p["kh"], sh, ph, dh)
    ow = conv_out(p["w"], p["kw"], sw, pw, dw)
    if oh < 1 or ow < 1:
        raise GraphError(
            f"kernel {k!r}: output size {oh}x{ow} is empty for input "
            f"{p['h']}x{p['w']}, kernel {p['kh']}x{p['kw']}, stride {[sh, sw]}, "
            f"padding {[ph, pw]}, dilation {[dh, dw]}"
        )
    return oh, ow


def conv_shapes(p: Params, kernel: str = "conv2d") -> dict[str, Shape]:
    """The operand shapes of a conv call (x, w, bias, y; NCHW)."""
    oh, ow = out_hw(p, kernel)
    return {
        "x": (p["n"], p["c_in"], p["h"], p["w"]),
        "w": (p["c_out"], p["c_in"] // p["groups"], p["kh"], p["kw"]),
        "bias": (p["c_out"],),
        "y": (p["n"], p["c_out"], oh, ow),
    }


def _conv2d_shapes(p: Params) -> dict[str, Shape]:
    return conv_shapes(p)


def _conv2d_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = F.conv2d(
        t["x"],
        t["w"],
        t.get("bias"),
        stride=p["stride"],
        padding=p["padding"],
        dilation=p["dilation"],
        groups=p["groups"],
    )
    t["y"].copy_(apply_act(out, p["act"]))


def conv_flops(p: Params, kernel: str = "conv2d") -> int:
    """2 per multiply-add, plus the bias add and the activation per output."""
    oh, ow = out_hw(p, kernel)
    outputs = p["n"] * p["c_out"] * oh * ow
    macs = outputs * (p["c_in"] // p["groups"]) * p["kh"] * p["kw"]
    # The bias add is counted whether or not a bias is bound (params cannot tell).
    epilogue = outputs * (1 + (p["act"] != "none"))
    return 2 * macs + epilogue


def _conv2d_flops(p: Params) -> int:
    return conv_flops(p)


DIRECT_MAX_COUT_PER_GROUP = 16
"""Grouped convs with fewer output channels per group run the direct body."""
DIRECT_OUTPUTS_PER_VB = 256 * 16
"""Outputs per virtual block of conv2d_direct_body (CONV_DIRECT_PER_THREAD)."""
DIRECT_UNROLLED = (1, 3, 5, 7)
"""Square kernel sizes the direct body is compiled for with fixed loop bounds."""


CONV_TILES = (
    GemmTile(128, 128, 8, 1.0),
    GemmTile(128, 64, 8, 0.85),
    GemmTile(64, 128, 8, 0.85),
    GemmTile(64, 64, 8, 0.7),
    GemmTile(64, 32, 8, 0.55),
    GemmTile(32, 64, 8, 0.55),
    GemmTile(32, 32, 16, 0.4),
)
"""conv2d_body tiles: (output channels, output pixels, k); the k depths keep
every one spill-free with the gather's registers (see ops_linear.GEMM_TILES)."""


def is_direct(p: Params) -> bool:
    """Grouped with few channels per group: the direct body, at any precision."""
    return p["groups"] > 1 and p["c_out"] // p["groups"] < DIRECT_MAX_COUT_PER_GROUP


def direct_kernel_size(p: Params) -> tuple[int, int]:
    """The direct body's (KH, KW) template args: fixed when square and in
    DIRECT_UNROLLED, else (0, 0) (read from the args)."""
    kh, kw = p["kh"], p["kw"]
    if kh != kw or kh not in DIRECT_UNROLLED:
        return 0, 0
    return kh, kw


def direct_vb_count(p: Params, kernel: str = "conv2d") -> int:
    oh, ow = out_hw(p, kernel)
    return math.ceil(p["n"] * p["c_out"] * oh * ow / DIRECT_OUTPUTS_PER_VB)


def gemm_dims(p: Params, kernel: str = "conv2d") -> tuple[int, int, int]:
    """(rows, cols, batches) of the implicit GEMM: channels per group, output
    pixels (n * oh * ow), groups."""
    oh, ow = out_hw(p, kernel)
    return p["c_out"] // p["groups"], p["n"] * oh * ow, p["groups"]


def conv_tc_tile(p: Params, kernel: str = "conv2d") -> GemmTile:
    """The tensor-core tile (ops_linear_tc.TC_TILES) of tc_conv_vb for a call."""
    return tc_tile(*gemm_dims(p, kernel))


def conv_tc_smem_bytes(tile: GemmTile, dtype: str) -> int:
    """tc_conv_vb's shared memory (TcConvCfg::SMEM_BYTES): the tile's stages with
    an n-contiguous B, plus the [2][BK] int4 gather table (BK = 64 B of k)."""
    bk = 64 // ITEMSIZE_BYTES[dtype]
    return tc_smem_bytes(tile, dtype, b_kmajor=False) + 2 * bk * 16


def _tf32(p: Params) -> bool:
    return p.get("precision", "ieee") == "tf32" and not is_direct(p)


def _conv_gemm_tile(p: Params) -> GemmTile:
    rows, cols, groups = gemm_dims(p)
    return gemm_tile(rows, cols, groups, CONV_TILES)


def _conv2d_variant(p: Params) -> str:
    """conv2d_direct_body<KH, KW, ACT>, conv2d_tf32_body<BM, BN, ACT> or
    conv2d_body<BM, BN, BK, -1>; ACT is the act's index in ACTS (a template
    argument: each epilogue compiles only its own activation); the SIMT body
    takes -1, the act read at run time (fewer registers there, see conv2d.cu)."""
    act = ACTS.index(p["act"])
    if is_direct(p):
        kh, kw = direct_kernel_size(p)
        return f"conv2d_direct_body<{kh}, {kw}, {act}>"
    if _tf32(p):
        t = conv_tc_tile(p)
        return f"conv2d_tf32_body<{t.bm}, {t.bn}, {act}>"
    t = _conv_gemm_tile(p)
    return f"conv2d_body<{t.bm}, {t.bn}, {t.bk}, -1>"


def _conv2d_vb_count(p: Params) -> int:
    if is_direct(p):
        return direct_vb_count(p)
    rows, cols, groups = gemm_dims(p)
    t = conv_tc_tile(p) if _tf32(p) else _conv_gemm_tile(p)
    return t.tiles(rows, cols) * groups


def _conv2d_smem_bytes(p: Params) -> int:
    if is_direct(p):
        return 0
    if _tf32(p):
        return conv_tc_smem_bytes(conv_tc_tile(p), "float32")
    t = _conv_gemm_tile(p)
    return gemm_smem_bytes(t) + 2 * t.bk * 16  # + the double-buffered int4 table


# Zoo convolutions at batch 8: the shapes every conv kernel's samples use.
RESNET_STEM = {
    "n": 8,
    "c_in": 3,
    "h": 224,
    "w": 224,
    "c_out": 64,
    "kh": 7,
    "kw": 7,
    "stride": (2, 2),
    "padding": (3, 3),
    "act": "relu",
}
"""ResNet-50 stem: 7x7 stride 2 over 3 channels (k = 147, not a multiple of 4)."""
RESNET_LAYER1 = {
    "n": 8,
    "c_in": 64,
    "h": 56,
    "w": 56,
    "c_out": 64,
    "kh": 3,
    "kw": 3,
    "stride": (1, 1),
    "padding": (1, 1),
    "act": "relu",
}
"""ResNet-50 layer1 3x3, 64 -> 64 at 56x56."""
RESNET_DOWNSAMPLE = {
    "n": 8,
    "c_in": 256,
    "h": 56,
    "w": 56,
    "c_out": 512,
    "kh": 1,
    "kw": 1,
    "stride": (2, 2),
}
"""ResNet-50 layer2 downsample: 1x1 256 -> 512, stride 2, 56x56 -> 28x28."""
MOBILENET_DEPTHWISE = {
    "n": 8,
    "c_in": 96,
    "h": 56,
    "w": 56,
    "c_out": 96,
    "kh": 3,
    "kw": 3,
    "stride": (1, 1),
    "padding": (1, 1),
    "groups": 96,
}
"""MobileNet-style depthwise 3x3 over 96 channels (the direct body)."""

SAMPLE_PARAMS: list[dict] = [
    RESNET_STEM,
    RESNET_LAYER1,
    MOBILENET_DEPTHWISE,
    {**RESNET_STEM, "precision": "tf32"},
    {**RESNET_DOWNSAMPLE, "precision": "tf32"},
]


conv2d = catalog.register(
    KernelSpec(
        name="conv2d",
        summary=(
            "2-D convolution, NCHW, grouped and dilated, optional bias and act; "
            "precision ieee (SIMT fp32) or tf32 (tensor cores)"
        ),
        operands=(
            Operand("x", "read"),
            Operand("w", "read"),
            Operand("bias", "read", optional=True),
            Operand("y", "write"),
        ),
        params=(
            *(Param(d, "int") for d in ("n", "c_in", "h", "w", "c_out", "kh", "kw")),
            Param("stride", "ints", required=False, default=(1, 1)),
            Param("padding", "ints", required=False, default=(0, 0)),
            Param("dilation", "ints", required=False, default=(1, 1)),
            Param("groups", "int", required=False, default=1),
            Param("act", "str", required=False, default="none", choices=ACTS),
            Param(
                "precision", "str", required=False, default="ieee", choices=PRECISIONS
            ),
        ),
        shapes=_conv2d_shapes,
        reference=_conv2d_reference,
        flops=_conv2d_flops,
        cta_threads=256,
        elems_per_virtual_block=64 * 64,
        source="conv2d.cu",
        variant=_conv2d_variant,
        vb_count=_conv2d_vb_count,
        smem_bytes=_conv2d_smem_bytes,
    )
)
