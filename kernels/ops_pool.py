"""Pooling kernels: `max_pool2d`, `avg_pool2d` and `adaptive_avg_pool2d` (NCHW).

Owns the pooling shape rules, which follow torch's exactly: padding at most half
the kernel, and in ceil mode the last window must start inside the input or its
left padding. The CUDA bodies are in kernels/src/pool.cu: one output per
thread, 1024 outputs per virtual block (a warp per plane for global average
pooling). Imports torch, reefd.errors and this package's spec, catalog and
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


OUTPUTS_PER_VB = 256 * 4
"""Outputs per virtual block of the windowed bodies (POOL_PER_THREAD = 4)."""
GLOBAL_PLANES_PER_VB = 32
"""(n, c) planes per virtual block of adaptive_avg_pool2d_global_body."""


def _window_vb_count(kernel: str) -> Callable[[Params], int]:
    def vb_count(p: Params) -> int:
        oh, ow = _pool_hw(kernel, p)
        return math.ceil(p["n"] * p["c"] * oh * ow / OUTPUTS_PER_VB)

    return vb_count


def _is_global(p: Params) -> bool:
    return p["out_h"] == 1 and p["out_w"] == 1


def _adaptive_variant(p: Params) -> str:
    if _is_global(p):
        return "adaptive_avg_pool2d_global_body"
    return "adaptive_avg_pool2d_body"


def _adaptive_vb_count(p: Params) -> int:
    _adaptive_shapes(p)
    if _is_global(p):
        return math.ceil(p["n"] * p["c"] / GLOBAL_PLANES_PER_VB)
    return math.ceil(p["n"] * p["c"] * p["out_h"] * p["out_w"] / OUTPUTS_PER_VB)


def _body(name: str) -> Callable[[Params], str]:
    return lambda p: f"{name}_body"


def _no_smem(p: Params) -> int:
    return 0


_STEM = {"n": 8, "c": 64, "h": 112, "w": 112}
_STEM_WINDOW = {**_STEM, "kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}
SAMPLE_PARAMS: dict[str, list[dict]] = {
    # Keyed by kernel name: the windows differ between max and avg pooling.
    "max_pool2d": [_STEM_WINDOW],  # the ResNet-50 stem pool
    "avg_pool2d": [
        _STEM_WINDOW,
        # Inception-style: 3x3 stride 1 over 35x35, padding not counted.
        {
            **{**_STEM, "c": 192, "h": 35, "w": 35},
            "kernel": (3, 3),
            "stride": (1, 1),
            "padding": (1, 1),
            "count_include_pad": False,
        },
    ],
    "adaptive_avg_pool2d": [
        # ResNet-50 global average pool, and a 7x7 -> 3x3 adaptive pool.
        {"n": 8, "c": 2048, "h": 7, "w": 7, "out_h": 1, "out_w": 1},
        {"n": 8, "c": 512, "h": 7, "w": 7, "out_h": 3, "out_w": 3},
    ],
}

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
        elems_per_virtual_block=OUTPUTS_PER_VB,
        cta_threads=256,
        source="pool.cu",
        variant=_body("max_pool2d"),
        vb_count=_window_vb_count("max_pool2d"),
        smem_bytes=_no_smem,
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
        elems_per_virtual_block=OUTPUTS_PER_VB,
        cta_threads=256,
        source="pool.cu",
        variant=_body("avg_pool2d"),
        vb_count=_window_vb_count("avg_pool2d"),
        smem_bytes=_no_smem,
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
        elems_per_virtual_block=OUTPUTS_PER_VB,
        cta_threads=256,
        source="pool.cu",
        variant=_adaptive_variant,
        vb_count=_adaptive_vb_count,
        smem_bytes=_no_smem,
    )
)
