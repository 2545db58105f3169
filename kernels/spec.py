"""The KernelSpec record: what the daemon knows about one library kernel.

A kernel receives raw buffers plus scalar params, exactly as a GPU kernel receives
pointers plus ints. The spec's shape rule turns params into the shape each operand
is viewed as; that shape fixes the operand's memory extent, which graph validation
checks against the buffer it is bound to. The torch reference is the ground truth
in tests and the implementation of the cpu backend.

Imports torch and reefd.errors only; knows nothing of graphs or the daemon.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from reefd.errors import GraphError

ITEMSIZE_BYTES: dict[str, int] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
}

TORCH_DTYPE: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
}

DTYPE_NAME: dict[torch.dtype, str] = {v: k for k, v in TORCH_DTYPE.items()}

FLOAT_DTYPES = ("float32",)

Shape = tuple[int, ...]
Params = Mapping[str, Any]
ParamKind = Literal["int", "float", "bool", "ints", "str"]


@dataclass(frozen=True)
class Operand:
    """One buffer argument of a kernel."""

    name: str
    access: Literal["read", "write"]
    dtypes: tuple[str, ...] = FLOAT_DTYPES
    optional: bool = False


@dataclass(frozen=True)
class Param:
    """One scalar (or small int list) argument of a kernel."""

    name: str
    kind: ParamKind
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    size: int = 2
    """Length of an `ints` param (each element is one int field in the C args)."""


@dataclass(frozen=True)
class KernelSpec:
    """A catalog entry.

    `shapes(params)` returns the shape every operand is viewed as (optional
    operands included); it raises GraphError when params are inconsistent.
    `reference(tensors, params)` computes the kernel with torch, writing into the
    output operands' tensors in place.
    """

    name: str
    summary: str
    operands: tuple[Operand, ...]
    params: tuple[Param, ...]
    shapes: Callable[[Params], dict[str, Shape]]
    reference: Callable[[dict[str, torch.Tensor], Params], None]
    flops: Callable[[Params], int]
    cta_threads: int = 256
    elems_per_virtual_block: int = 1024
    inplace_ok: bool = False
    forms: tuple[str, ...] = field(default=("plain", "preemptible", "padded"))
    source: str = ""
    """File in kernels/src holding the CUDA body ('' = no CUDA body yet)."""
    variant: Callable[[Params], str] | None = None
    """The body to run for these params, e.g. "linear_body<64, 64, 16>" (a tile
    configuration chosen per shape); None means f"{name}_body"."""
    vb_count: Callable[[Params], int] | None = None
    """Virtual blocks the body expects for these params; None means one per
    `elems_per_virtual_block` output elements."""
    smem_bytes: Callable[[Params], int] | None = None
    """Dynamic shared memory the body needs for these params; None means 0."""

    def operand(self, name: str) -> Operand:
        for op in self.operands:
            if op.name == name:
                return op
        raise GraphError(f"kernel {self.name!r} has no operand {name!r}")

    def with_defaults(self, params: Params) -> dict[str, Any]:
        """Params with defaults filled in and their kinds checked."""
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise GraphError(f"kernel {self.name!r}: unknown params {unknown}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in params:
                out[p.name] = _check_kind(self.name, p, params[p.name])
            elif p.required:
                raise GraphError(f"kernel {self.name!r}: missing param {p.name!r}")
            else:
                out[p.name] = p.default
        return out

    def extents_bytes(
        self, params: Params, dtypes: Mapping[str, str]
    ) -> dict[str, int]:
        """Bytes each bound operand may touch, from the shape rule."""
        return {
            name: math.prod(shape) * ITEMSIZE_BYTES[dtypes[name]]
            for name, shape in self.shapes(params).items()
            if name in dtypes
        }

    def bytes_moved(self, params: Params, dtypes: Mapping[str, str]) -> int:
        return sum(self.extents_bytes(params, dtypes).values())

    def body(self, params: Params) -> str:
        return self.variant(params) if self.variant else f"{self.name}_body"

    def dynamic_smem_bytes(self, params: Params) -> int:
        return self.smem_bytes(params) if self.smem_bytes else 0

    def virtual_blocks(self, params: Params) -> int:
        """How many virtual blocks a call has (what `body(vb)` is run for)."""
        if self.vb_count is not None:
            return self.vb_count(params)
        shapes = self.shapes(params)
        outs = [math.prod(shapes[o.name]) for o in self.operands if o.access == "write"]
        return max(1, math.ceil(sum(outs) / self.elems_per_virtual_block))


def _check_kind(kernel: str, p: Param, value: Any) -> Any:
    bad = GraphError(f"kernel {kernel!r}: param {p.name!r}={value!r} is not {p.kind}")
    if p.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if p.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if p.kind == "str":
        if not isinstance(value, str) or (p.choices and value not in p.choices):
            raise GraphError(
                f"kernel {kernel!r}: param {p.name!r}={value!r} is not one of "
                f"{list(p.choices)}"
            )
        return value
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise bad
    return tuple(value)


def positive(kernel: str, **dims: int) -> None:
    """Raise GraphError unless every named dimension is >= 1."""
    for name, value in dims.items():
        if value < 1:
            raise GraphError(f"kernel {kernel!r}: {name}={value} must be >= 1")
