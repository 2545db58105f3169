"""Flat elementwise kernels: `relu`, `add` (with a relu epilogue) and `copy`.

Each views its operands as flat `[numel]` vectors, so one kernel serves any
shape. `relu` and `add` may write over an input (their references compute into a
temporary first). Imports torch and this package's spec and catalog only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

ACTS = ("none", "relu")
NUMEL = Param("numel", "int")


def _flat(
    kernel: str, operands: tuple[str, ...]
) -> Callable[[Params], dict[str, Shape]]:
    """The shape rule of a flat kernel: every operand is `[numel]`."""

    def shapes(p: Params) -> dict[str, Shape]:
        positive(kernel, numel=p["numel"])
        return {name: (p["numel"],) for name in operands}

    return shapes


def _numel_flops(p: Params) -> int:
    return p["numel"]


def _relu_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(torch.relu(t["x"]))


def _add_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = torch.add(t["a"], t["b"])
    if p["act"] == "relu":
        out = torch.relu(out)
    t["y"].copy_(out)


def _add_flops(p: Params) -> int:
    return p["numel"] * (1 + (p["act"] != "none"))


def _copy_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(t["x"])


relu = catalog.register(
    KernelSpec(
        name="relu",
        summary="y = max(x, 0), flat; y may alias x",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(NUMEL,),
        shapes=_flat("relu", ("x", "y")),
        reference=_relu_reference,
        flops=_numel_flops,
        inplace_ok=True,
    )
)

add = catalog.register(
    KernelSpec(
        name="add",
        summary="y = a + b, flat, optional relu; y may alias a or b",
        operands=(Operand("a", "read"), Operand("b", "read"), Operand("y", "write")),
        params=(
            NUMEL,
            Param("act", "str", required=False, default="none", choices=ACTS),
        ),
        shapes=_flat("add", ("a", "b", "y")),
        reference=_add_reference,
        flops=_add_flops,
        inplace_ok=True,
    )
)

copy = catalog.register(
    KernelSpec(
        name="copy",
        summary="y = x, flat",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(NUMEL,),
        shapes=_flat("copy", ("x", "y")),
        reference=_copy_reference,
        flops=_numel_flops,
    )
)
