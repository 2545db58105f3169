"""The row softmax kernel: `softmax` over the last dim of a `[rows, cols]` view.

The reference computes into a temporary, so `y` may alias `x`. Imports torch and
this package's spec and catalog only.
"""

from __future__ import annotations

import torch

from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive


def _softmax_shapes(p: Params) -> dict[str, Shape]:
    positive("softmax", rows=p["rows"], cols=p["cols"])
    return {"x": (p["rows"], p["cols"]), "y": (p["rows"], p["cols"])}


def _softmax_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(torch.softmax(t["x"], dim=-1))


def _softmax_flops(p: Params) -> int:
    # max, subtract, exp, sum and divide: about five operations per element.
    return 5 * p["rows"] * p["cols"]


softmax = catalog.register(
    KernelSpec(
        name="softmax",
        summary="y = softmax(x) over the last dim of [rows, cols]; y may alias x",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(Param("rows", "int"), Param("cols", "int")),
        shapes=_softmax_shapes,
        reference=_softmax_reference,
        flops=_softmax_flops,
        inplace_ok=True,
    )
)
