"""Flat elementwise kernels: `relu`, `add` (with a relu epilogue) and `copy`.

Each views its operands as flat `[numel]` vectors, so one kernel serves any
shape. `relu` and `add` may write over an input (their references compute into a
temporary first). The CUDA bodies are in kernels/src/elementwise.cu: one virtual
block per 1024 elements. Imports torch and this package's spec and catalog only.
"""

from __future__ import annotations

import math
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


ELEMS_PER_VB = 1024
"""Elements per virtual block of every elementwise body (EW_PER_VB)."""


def _flat_vb_count(p: Params) -> int:
    return math.ceil(p["numel"] / ELEMS_PER_VB)


def _body(name: str) -> Callable[[Params], str]:
    return lambda p: f"{name}_body"


def _no_smem(p: Params) -> int:
    return 0


SAMPLE_PARAMS: list[dict] = [
    # ResNet-50 layer1 activation at batch 8: 8 x 256 x 56 x 56.
    {"numel": 8 * 256 * 56 * 56},
    # An odd size: a partial last block and the scalar tail.
    {"numel": 1000 * 1000 + 3},
]


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
        elems_per_virtual_block=ELEMS_PER_VB,
        cta_threads=256,
        source="elementwise.cu",
        variant=_body("relu"),
        vb_count=_flat_vb_count,
        smem_bytes=_no_smem,
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
        elems_per_virtual_block=ELEMS_PER_VB,
        cta_threads=256,
        source="elementwise.cu",
        variant=_body("add"),
        vb_count=_flat_vb_count,
        smem_bytes=_no_smem,
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
        elems_per_virtual_block=ELEMS_PER_VB,
        cta_threads=256,
        source="elementwise.cu",
        variant=_body("copy"),
        vb_count=_flat_vb_count,
        smem_bytes=_no_smem,
    )
)
