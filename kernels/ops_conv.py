"""Convolution kernels: `conv2d` (grouped, dilated, with a bias + relu epilogue).

Owns the conv shape rule (torch's output-size formula, checked strictly) and the
`pair` helper that checks two-int params, which the pooling kernels share.
Imports torch, reefd.errors and this package's spec and catalog only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reefd.errors import GraphError
from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

ACTS = ("none", "relu")


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


def _out_hw(p: Params) -> tuple[int, int]:
    k = "conv2d"
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


def _conv2d_shapes(p: Params) -> dict[str, Shape]:
    oh, ow = _out_hw(p)
    return {
        "x": (p["n"], p["c_in"], p["h"], p["w"]),
        "w": (p["c_out"], p["c_in"] // p["groups"], p["kh"], p["kw"]),
        "bias": (p["c_out"],),
        "y": (p["n"], p["c_out"], oh, ow),
    }


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
    if p["act"] == "relu":
        out = torch.relu(out)
    t["y"].copy_(out)


def _conv2d_flops(p: Params) -> int:
    oh, ow = _out_hw(p)
    outputs = p["n"] * p["c_out"] * oh * ow
    macs = outputs * (p["c_in"] // p["groups"]) * p["kh"] * p["kw"]
    # The bias add is counted whether or not a bias is bound (params cannot tell).
    epilogue = outputs * (1 + (p["act"] != "none"))
    return 2 * macs + epilogue


conv2d = catalog.register(
    KernelSpec(
        name="conv2d",
        summary="2-D convolution, NCHW, grouped and dilated, optional bias and relu",
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
        ),
        shapes=_conv2d_shapes,
        reference=_conv2d_reference,
        flops=_conv2d_flops,
        cta_threads=256,
        elems_per_virtual_block=64 * 64,
    )
)
