"""The dense kernel: `linear` (y = x @ w.T + bias, optional relu epilogue).

Owns the linear shape rule and its torch reference. Imports torch, reefd.errors
and this package's spec and catalog only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

ACTS = ("none", "relu")


def _linear_shapes(p: Params) -> dict[str, Shape]:
    positive("linear", m=p["m"], n=p["n"], k=p["k"])
    return {
        "x": (p["m"], p["k"]),
        "w": (p["n"], p["k"]),
        "bias": (p["n"],),
        "y": (p["m"], p["n"]),
    }


def _linear_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = F.linear(t["x"], t["w"], t.get("bias"))
    if p["act"] == "relu":
        out = torch.relu(out)
    t["y"].copy_(out)


def _linear_flops(p: Params) -> int:
    _linear_shapes(p)
    outputs = p["m"] * p["n"]
    # The bias add is counted whether or not a bias is bound (params cannot tell).
    epilogue = outputs * (1 + (p["act"] != "none"))
    return 2 * outputs * p["k"] + epilogue


linear = catalog.register(
    KernelSpec(
        name="linear",
        summary="y[m,n] = x[m,k] @ w[n,k].T (+ bias[n]), optional relu",
        operands=(
            Operand("x", "read"),
            Operand("w", "read"),
            Operand("bias", "read", optional=True),
            Operand("y", "write"),
        ),
        params=(
            Param("m", "int"),
            Param("n", "int"),
            Param("k", "int"),
            Param("act", "str", required=False, default="none", choices=ACTS),
        ),
        shapes=_linear_shapes,
        reference=_linear_reference,
        flops=_linear_flops,
        cta_threads=256,
        elems_per_virtual_block=64 * 64,
    )
)
