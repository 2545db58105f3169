"""The values a lowering works on, before buffers exist, and small fx helpers.

A `_Const` is known at lowering time (weights, folded expressions). A computed
tensor is a `Value`: a view (shape, strides, offset, all in elements) of a
`Storage`, the memory one kernel output (or a graph input) occupies. Views that
only reinterpret memory (reshape, permute, slice, expand) make new Values of the
same storage with no kernel; a consumer that needs dense memory asks for it and
gets a copy only when the view is not dense. Imports torch only.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from reefd.graph import Role

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


@dataclass(eq=False)
class Const:
    """A value known at lowering time; `origin` names where it came from."""

    value: Any
    origin: str
    transpose_of: Const | None = None


@dataclass(eq=False)
class Storage:
    """The memory of one computed value before buffers are assigned.

    Input, weight and output storages carry their buffer name; scratch ones get
    a slot when buffers are assigned.
    """

    numel: int
    role: Role
    shape: tuple[int, ...]
    name: str = ""
    tensor: torch.Tensor | None = None
    dtype: str = "float32"


@dataclass(eq=False)
class Call:
    kernel: str
    args: dict[str, Storage]
    params: dict[str, Any]
    where: str


@dataclass(eq=False)
class Value:
    """A tensor: a view of a storage.

    `call` is set only on the exact, dense output of a call (not on views): the
    peepholes (activation fusion, batch norm folding) rewrite that call.
    `strides` None means dense row-major from `offset` 0.
    """

    storage: Storage
    shape: tuple[int, ...]
    call: Call | None = None
    strides: tuple[int, ...] | None = None
    offset: int = 0
    dense_copy: Value | None = field(default=None, repr=False)

    @property
    def is_dense(self) -> bool:
        """Row-major from offset 0 (the strides of size-1 dims do not matter)."""
        if self.offset != 0:
            return False
        if self.strides is None:
            return True
        want = dense_strides(self.shape)
        return all(
            size == 1 or s == w
            for size, s, w in zip(self.shape, self.strides, want, strict=True)
        )

    def layout(self) -> tuple[tuple[int, ...], int]:
        """(strides, offset) with dense strides filled in."""
        return self.strides or dense_strides(self.shape), self.offset


def dense_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, step = [], 1
    for d in reversed(shape):
        out.append(step)
        step *= d
    return tuple(reversed(out))


def collapse(
    shape: tuple[int, ...], *strides: tuple[int, ...]
) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Drop size-1 dims and merge neighbours that are contiguous in every stride
    list, so a copy needs as few dims as possible. Returns (shape, strides)."""
    dims = [
        [size, *(s[d] for s in strides)] for d, size in enumerate(shape) if size != 1
    ]
    merged: list[list[int]] = []
    for dim in dims:
        if merged and all(
            prev_s == s * dim[0]
            for prev_s, s in zip(merged[-1][1:], dim[1:], strict=True)
        ):
            merged[-1] = [merged[-1][0] * dim[0], *dim[1:]]
        else:
            merged.append(dim)
    if not merged:
        merged = [[1, *(0 for _ in strides)]]
    out_shape = tuple(d[0] for d in merged)
    out_strides = [tuple(d[1 + i] for d in merged) for i in range(len(strides))]
    return out_shape, out_strides


def bound(node: fx.Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    out: dict[str, Any] = {}
    for i, arg in enumerate(node.target._schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def node_shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(int(d) for d in node.meta["val"].shape)


def pair(value: Any) -> list[int]:
    """An int or 1-/2-int list as a 2-int list ([] stays [])."""
    if isinstance(value, int):
        return [value, value]
    value = [int(v) for v in value]
    return value * 2 if len(value) == 1 else value


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def sibling(origin: str, leaf: str) -> str:
    """'conv1.weight' -> 'conv1.bias'."""
    stem, _, _ = origin.rpartition(".")
    return f"{stem}.{leaf}" if stem else leaf


def where(node: fx.Node) -> str:
    """'path:line in func: code' for the innermost user frame of the node's trace."""
    lines = (node.meta.get("stack_trace") or "").splitlines()
    found = ""
    for i, line in enumerate(lines):
        m = _FRAME.search(line)
        if m is None or m["file"].startswith(_TORCH_DIR):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) else ""
        code = "" if _FRAME.search(code) else code
        path = os.path.relpath(m["file"])
        path = m["file"] if path.startswith("..") else path
        found = f"{path}:{m['line']} in {m['func']}" + (f": {code}" if code else "")
    return found
