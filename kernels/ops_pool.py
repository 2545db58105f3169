"""Pooling kernels: `max_pool2d`, `avg_pool2d` and `adaptive_avg_pool2d` (NCHW).

Owns the pooling shape rules, which follow torch's exactly: padding at most half
the kernel, and in ceil mode the last window must start inside the input or its
left padding. Imports torch, reefd.errors and this package's spec, catalog and
ops_conv (for `pair`) only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from reefd.errors import GraphError
from reefd.kernels import catalog
from reefd.kernels.ops_conv import pair
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

NCHW = tuple(Param(d, "int") for d in ("n", "c", "h", "w"))


def pool_out(
    size: int, k: int, stride: int, pad: int, dilation: int, ceil: bool
) -> int:
    """Output length along one axis, exactly torch's `pooling_output_shape`."""
    span = size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil else 0)
    out = span // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_hw(kernel: str, p: Params) -> tuple[int, int]:
    positive(kernel, n=p["n"], c=p["c"], h=p["h"], w=p["w"])
    kh, kw = pair(kernel, "kernel", p["kernel"], 1)
    sh, sw = pair(kernel, "stride", p["stride"], 1)
    ph, pw = pair(kernel, "padding", p["padding"], 0)
    dh, dw = pair(kernel, "dilation", p.get("dilation", (1, 1)), 1)
    if ph > kh // 2 or pw > kw // 2:
        raise GraphError(
            f"kernel {kernel!r}: padding={[ph, pw]} must be at most half of "
            f"kernel={[kh, kw]}"
        )
    oh = pool_out(p["h"], kh, sh, ph, dh, p["ceil_mode"])
    ow = pool_out(p["w"], kw, sw, pw, dw, p["ceil_mode"])
    if oh < 1 or ow < 1:
        raise GraphError(
            f"kernel {kernel!r}: output size {oh}x{ow} is empty for input "
            f"{p['h']}x{p['w']}, kernel {[kh, kw]}, stride {[sh, sw]}, "
            f"padding {[ph, pw]}, dilation {[dh, dw]}"
        )
    return oh, ow


def _window_shapes(kernel: str) -> Callable[[Params], dict[str, Shape]]:
    """The shape rule of a windowed pool named `kernel`."""

    def shapes(p: Params) -> dict[str, Shape]:
        oh, ow = _pool_hw(kernel, p)
        return {"x": (p["n"], p["c"], p["h"], p["w"]), "y": (p["n"], p["c"], oh, ow)}

    return shapes


def _window_flops(kernel: str) -> Callable[[Params], int]:
    """One operation per window element per output."""

    def flops(p: Params) -> int:
        oh, ow = _pool_hw(kernel, p)
        return p["n"] * p["c"] * oh * ow * math.prod(p["kernel"])

    return flops


def _max_pool2d_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = F.max_pool2d(
        t["x"],
        p["kernel"],
        p["stride"],
        p["padding"],
        p["dilation"],
        ceil_mode=p["ceil_mode"],
    )
    t["y"].copy_(out)


def _avg_pool2d_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = F.avg_pool2d(
        t["x"],
        p["kernel"],
        p["stride"],
        p["padding"],
        ceil_mode=p["ceil_mode"],
        count_include_pad=p["count_include_pad"],
        divisor_override=p["divisor_override"] or None,
    )
    t["y"].copy_(out)


def _avg_pool2d_shapes(p: Params) -> dict[str, Shape]:
    if p["divisor_override"] < 0:
        raise GraphError(
            f"kernel 'avg_pool2d': divisor_override={p['divisor_override']} "
            "must be >= 0 (0 = none)"
        )
    return _window_shapes("avg_pool2d")(p)


def _adaptive_shapes(p: Params) -> dict[str, Shape]:
    positive("adaptive_avg_pool2d", n=p["n"], c=p["c"], h=p["h"], w=p["w"])
    positive("adaptive_avg_pool2d", out_h=p["out_h"], out_w=p["out_w"])
    return {
        "x": (p["n"], p["c"], p["h"], p["w"]),
        "y": (p["n"], p["c"], p["out_h"], p["out_w"]),
    }


def _adaptive_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(F.adaptive_avg_pool2d(t["x"], (p["out_h"], p["out_w"])))


def _adaptive_flops(p: Params) -> int:
    # Adaptive windows overlap by one element at each boundary that is not an
    # integer position, so the window lengths along an axis sum to
    # size + out - gcd(size, out).
    _adaptive_shapes(p)
    rows = p["h"] + p["out_h"] - math.gcd(p["h"], p["out_h"])
    cols = p["w"] + p["out_w"] - math.gcd(p["w"], p["out_w"])
    return p["n"] * p["c"] * rows * cols


_KERNEL = Param("kernel", "ints")
_STRIDE = Param("stride", "ints")
_PADDING = Param("padding", "ints", required=False, default=(0, 0))
_CEIL = Param("ceil_mode", "bool", required=False, default=False)

max_pool2d = catalog.register(
    KernelSpec(
        name="max_pool2d",
        summary="2-D max pooling, NCHW, padded and dilated, optional ceil mode",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(
            *NCHW,
            _KERNEL,
            _STRIDE,
            _PADDING,
            Param("dilation", "ints", required=False, default=(1, 1)),
            _CEIL,
        ),
        shapes=_window_shapes("max_pool2d"),
        reference=_max_pool2d_reference,
        flops=_window_flops("max_pool2d"),
    )
)

avg_pool2d = catalog.register(
    KernelSpec(
        name="avg_pool2d",
        summary="2-D average pooling, NCHW, padded, optional ceil mode and divisor",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(
            *NCHW,
            _KERNEL,
            _STRIDE,
            _PADDING,
            _CEIL,
            Param("count_include_pad", "bool", required=False, default=True),
            Param("divisor_override", "int", required=False, default=0),
        ),
        shapes=_avg_pool2d_shapes,
        reference=_avg_pool2d_reference,
        flops=_window_flops("avg_pool2d"),
    )
)

adaptive_avg_pool2d = catalog.register(
    KernelSpec(
        name="adaptive_avg_pool2d",
        summary="2-D adaptive average pooling to out_h x out_w, NCHW",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(*NCHW, Param("out_h", "int"), Param("out_w", "int")),
        shapes=_adaptive_shapes,
        reference=_adaptive_reference,
        flops=_adaptive_flops,
    )
)
