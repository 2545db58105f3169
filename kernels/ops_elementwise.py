"""Elementwise kernels: their specs, shape rules and torch references.

Flat kernels view every operand as `[numel]`, so one kernel serves any shape:
`relu`, `add` (+ act), `copy`, `unary` (any act, clamp or affine) and `cast_i64`
(int64 -> float32). `binary` is add/sub/mul/div (+ act) with 4-D broadcasting;
`channel_affine` is an inference batch norm, `act(x * scale[c] + shift[c])` on
`[n, c, inner]`. Every kernel but `copy` and `cast_i64` may write over an input
(references compute into a temporary first); for `binary` only an input of the
full output shape may be aliased. The CUDA bodies are in
kernels/src/elementwise.cu: one virtual block per 1024 output elements.

Rounding that the bodies and references share: a float param is rounded to
float32 as the C args carry it (`f32`), and `affine` / `channel_affine` compute
`x * scale` and then `+ shift` with two float32 roundings (no fused multiply-add),
as torch's separate mul and add do.

Imports ctypes, torch, reefd.errors and this package's spec, catalog and act
modules only.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence

import torch

from reefd.errors import GraphError
from reefd.kernels import catalog
from reefd.kernels.act import ACTS, act_flops, apply_act
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

ELEMS_PER_VB = 1024
"""Output elements per virtual block of every elementwise body (EW_PER_VB)."""
FLT_MAX = 3.4028234663852886e38
UNARY_OPS = (*ACTS, "clamp", "affine")
"""`unary`'s op choices: every activation (same index as in ACTS), then two more."""
BINARY_OPS = ("add", "sub", "mul", "div")
RANK = 4
"""Dims of `binary`'s shape params (leading 1s pad lower ranks)."""

NUMEL = Param("numel", "int")
ACT = Param("act", "str", required=False, default="none", choices=ACTS)

ShapeRule = Callable[[Params], dict[str, Shape]]


# --- shared helpers -------------------------------------------------------------


def f32(value: float) -> float:
    """`value` rounded to float32, as a float param travels in the C args."""
    return ctypes.c_float(value).value


def _flat(kernel: str, operands: tuple[str, ...]) -> ShapeRule:
    """The shape rule of a flat kernel: every operand is `[numel]`."""

    def shapes(p: Params) -> dict[str, Shape]:
        positive(kernel, numel=p["numel"])
        return {name: (p["numel"],) for name in operands}

    return shapes


def _vb_count(shapes: ShapeRule) -> Callable[[Params], int]:
    """One virtual block per ELEMS_PER_VB elements of the output `y`."""

    def count(p: Params) -> int:
        return max(1, math.ceil(math.prod(shapes(p)["y"]) / ELEMS_PER_VB))

    return count


def _body(name: str) -> Callable[[Params], str]:
    return lambda p: f"{name}_body"


def _no_smem(p: Params) -> int:
    return 0


def _numel_flops(p: Params) -> int:
    return p["numel"]


def _elementwise(
    name: str,
    summary: str,
    operands: tuple[Operand, ...],
    params: tuple[Param, ...],
    shapes: ShapeRule,
    reference: Callable[[dict[str, torch.Tensor], Params], None],
    flops: Callable[[Params], int],
    inplace_ok: bool,
) -> KernelSpec:
    """Register an elementwise kernel: 1024 outputs per virtual block, no smem."""
    return catalog.register(
        KernelSpec(
            name=name,
            summary=summary,
            operands=operands,
            params=params,
            shapes=shapes,
            reference=reference,
            flops=flops,
            inplace_ok=inplace_ok,
            elems_per_virtual_block=ELEMS_PER_VB,
            cta_threads=256,
            source="elementwise.cu",
            variant=_body(name),
            vb_count=_vb_count(shapes),
            smem_bytes=_no_smem,
        )
    )


def _not_nan(kernel: str, p: Params, names: Sequence[str]) -> None:
    for name in names:
        if math.isnan(p[name]):
            raise GraphError(f"kernel {kernel!r}: {name}=nan is not a number")


# --- relu, add, copy ------------------------------------------------------------


def _relu_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(torch.relu(t["x"]))


def _add_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(apply_act(torch.add(t["a"], t["b"]), p["act"]))


def _add_flops(p: Params) -> int:
    return p["numel"] * (1 + act_flops(p["act"]))


def _copy_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(t["x"])


# --- unary ----------------------------------------------------------------------

_UNARY_FLOATS = ("lo", "hi", "scale", "shift")


def _unary_shapes(p: Params) -> dict[str, Shape]:
    _not_nan("unary", p, _UNARY_FLOATS)
    return _flat("unary", ("x", "y"))(p)


def _unary_value(x: torch.Tensor, p: Params) -> torch.Tensor:
    """y for `unary`: a new tensor (or `x` itself for op "none")."""
    op = p["op"]
    if op == "clamp":
        return torch.clamp(x, f32(p["lo"]), f32(p["hi"]))
    if op == "affine":
        return torch.mul(x, f32(p["scale"])).add_(f32(p["shift"]))
    return apply_act(x, op)


def _unary_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(_unary_value(t["x"], p))


def _unary_flops(p: Params) -> int:
    return p["numel"] * (2 if p["op"] == "affine" else 1)


# --- binary ---------------------------------------------------------------------


def _dims(kernel: str, name: str, value: Sequence[int]) -> Shape:
    """A RANK-int shape param, every dim >= 1."""
    if len(value) != RANK or min(value) < 1:
        raise GraphError(
            f"kernel {kernel!r}: {name}={list(value)} must be {RANK} ints >= 1 "
            "(leading 1s for lower ranks)"
        )
    return tuple(value)


def _broadcast_from(operand: str, dims: Shape, out: Shape) -> Shape:
    """Check that operand `operand` of shape `dims` broadcasts to `out`."""
    for i, (d, o) in enumerate(zip(dims, out, strict=True)):
        if d not in (o, 1):
            raise GraphError(
                f"kernel 'binary': operand {operand!r} dim {i} is {d} "
                f"({operand}_shape={list(dims)}), but must be 1 or the output's "
                f"{o} (shape={list(out)})"
            )
    return dims


def _binary_shapes(p: Params) -> dict[str, Shape]:
    out = _dims("binary", "shape", p["shape"])
    a = _broadcast_from("a", _dims("binary", "a_shape", p["a_shape"]), out)
    b = _broadcast_from("b", _dims("binary", "b_shape", p["b_shape"]), out)
    return {"a": a, "b": b, "y": out}


_BINARY_TORCH: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
}


def _binary_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = _BINARY_TORCH[p["op"]](t["a"], t["b"])
    # copy_ also broadcasts a dim where the output is wider than both inputs.
    t["y"].copy_(apply_act(out, p["act"]))


def _binary_flops(p: Params) -> int:
    return math.prod(_binary_shapes(p)["y"]) * (1 + act_flops(p["act"]))


# --- cast_i64 -------------------------------------------------------------------


def _cast_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(t["x"].to(torch.float32))


# --- channel_affine -------------------------------------------------------------


def _channel_affine_shapes(p: Params) -> dict[str, Shape]:
    n, c, inner = p["n"], p["c"], p["inner"]
    positive("channel_affine", n=n, c=c, inner=inner)
    return {"x": (n, c, inner), "scale": (c,), "shift": (c,), "y": (n, c, inner)}


def _channel_affine_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    c = p["c"]
    out = torch.mul(t["x"], t["scale"].view(1, c, 1))
    out.add_(t["shift"].view(1, c, 1))
    t["y"].copy_(apply_act(out, p["act"]))


def _channel_affine_flops(p: Params) -> int:
    numel = math.prod(_channel_affine_shapes(p)["y"])
    return numel * (2 + act_flops(p["act"]))


# --- the catalog entries --------------------------------------------------------

_XY = (Operand("x", "read"), Operand("y", "write"))

relu = _elementwise(
    "relu",
    "y = max(x, 0) keeping NaN, flat; y may alias x",
    _XY,
    (NUMEL,),
    _flat("relu", ("x", "y")),
    _relu_reference,
    _numel_flops,
    inplace_ok=True,
)

add = _elementwise(
    "add",
    "y = act(a + b), flat; y may alias a or b",
    (Operand("a", "read"), Operand("b", "read"), Operand("y", "write")),
    (NUMEL, ACT),
    _flat("add", ("a", "b", "y")),
    _add_reference,
    _add_flops,
    inplace_ok=True,
)

copy = _elementwise(
    "copy",
    "y = x, flat",
    _XY,
    (NUMEL,),
    _flat("copy", ("x", "y")),
    _copy_reference,
    _numel_flops,
    inplace_ok=False,
)

unary = _elementwise(
    "unary",
    "y = op(x), flat: an activation, clamp(x, lo, hi) or x * scale + shift "
    "(two float32 roundings); y may alias x",
    _XY,
    (
        NUMEL,
        Param("op", "str", choices=UNARY_OPS),
        Param("lo", "float", required=False, default=-FLT_MAX),
        Param("hi", "float", required=False, default=FLT_MAX),
        Param("scale", "float", required=False, default=1.0),
        Param("shift", "float", required=False, default=0.0),
    ),
    _unary_shapes,
    _unary_reference,
    _unary_flops,
    inplace_ok=True,
)

binary = _elementwise(
    "binary",
    "y = act(a op b), op in add/sub/mul/div, 4-D with broadcasting (a dim of a "
    "or b is the output's or 1); y may alias an input of the output's shape",
    (Operand("a", "read"), Operand("b", "read"), Operand("y", "write")),
    (
        Param("op", "str", choices=BINARY_OPS),
        Param("shape", "ints", size=RANK),
        Param("a_shape", "ints", size=RANK),
        Param("b_shape", "ints", size=RANK),
        ACT,
    ),
    _binary_shapes,
    _binary_reference,
    _binary_flops,
    inplace_ok=True,
)

cast_i64 = _elementwise(
    "cast_i64",
    "y = float32(x) for int64 x (round to nearest), flat",
    (Operand("x", "read", dtypes=("int64",)), Operand("y", "write")),
    (NUMEL,),
    _flat("cast_i64", ("x", "y")),
    _cast_reference,
    _numel_flops,
    inplace_ok=False,
)

channel_affine = _elementwise(
    "channel_affine",
    "y[n, c, i] = act(x[n, c, i] * scale[c] + shift[c]) (two float32 roundings), "
    "an unfolded inference batch norm; y may alias x",
    (
        Operand("x", "read"),
        Operand("scale", "read"),
        Operand("shift", "read"),
        Operand("y", "write"),
    ),
    (Param("n", "int"), Param("c", "int"), Param("inner", "int"), ACT),
    _channel_affine_shapes,
    _channel_affine_reference,
    _channel_affine_flops,
    inplace_ok=True,
)

# --- shapes the check CLI compiles --------------------------------------------

ONLY = "only_for"
"""Sample key naming the one kernel a sample is for (see kernels/__main__.py)."""
BATCH = 8
SEQ = 128
"""DistilBERT sequence length."""

SAMPLE_PARAMS: list[dict] = [
    # ResNet-50 layer1 activation at batch 8: 8 x 256 x 56 x 56 (relu, add, copy).
    {"numel": BATCH * 256 * 56 * 56},
    # An odd size: a partial last block and the scalar tail.
    {"numel": 1000 * 1000 + 3},
    # MobileNetV2 block-1 expansion, relu6 on 8 x 96 x 112 x 112.
    {ONLY: "unary", "numel": BATCH * 96 * 112 * 112, "op": "relu6"},
    # ViT-B/16 and DistilBERT FFN: gelu on [8 * 128, 3072].
    {ONLY: "unary", "numel": BATCH * SEQ * 3072, "op": "gelu"},
    # ViT-B/16 attention: q / sqrt(64) on [8, 12, 197, 64].
    {ONLY: "unary", "numel": BATCH * 12 * 197 * 64, "op": "affine", "scale": 0.125},
    # DistilBERT attention scores + the padding mask, [8, 12, 128, 128] + [8, 1, 1,
    # 128].
    {
        ONLY: "binary",
        "op": "add",
        "shape": (BATCH, 12, SEQ, SEQ),
        "a_shape": (BATCH, 12, SEQ, SEQ),
        "b_shape": (BATCH, 1, 1, SEQ),
    },
    # ViT-B/16 position embedding: [8, 197, 768] + [1, 197, 768].
    {
        ONLY: "binary",
        "op": "add",
        "shape": (1, BATCH, 197, 768),
        "a_shape": (1, BATCH, 197, 768),
        "b_shape": (1, 1, 197, 768),
    },
    # DistilBERT input ids / attention mask, int64 [8, 128].
    {ONLY: "cast_i64", "numel": BATCH * SEQ},
    # DenseNet-121 pre-activation BN + relu on [8, 256, 56, 56].
    {ONLY: "channel_affine", "n": BATCH, "c": 256, "inner": 56 * 56, "act": "relu"},
    # ResNet-50 layer4 BN (not folded) on [8, 2048, 7, 7]: inner not a multiple of 4.
    {ONLY: "channel_affine", "n": BATCH, "c": 2048, "inner": 49},
]
