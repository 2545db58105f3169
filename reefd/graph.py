"""KernelGraph: what a client sends once per model, and its validation.

A graph is a list of buffers (flat typed memory with a logical shape and a role)
and an ordered list of kernel calls, each binding catalog-kernel operands to
buffers and giving scalar params. `validate` accepts a graph only if every call
names a catalog kernel with the right operands, params and dtypes, and every byte
a kernel may touch lies inside the buffer it was given. A client can only run
vetted kernels on its own memory.

Imports reefd.errors and reefd.kernels.catalog only; no torch tensors, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reefd.errors import GraphError
from reefd.kernels import catalog
from reefd.kernels.spec import ITEMSIZE_BYTES

MAX_BUFFERS = 100_000
MAX_CALLS = 100_000


class Role(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    WEIGHT = "weight"
    SCRATCH = "scratch"


@dataclass(frozen=True)
class Buffer:
    """Flat typed memory. `shape` is the logical shape clients see."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    role: Role

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE_BYTES[self.dtype]


@dataclass(frozen=True)
class KernelCall:
    """One launch of a catalog kernel: operand -> buffer name, plus params.

    `where` is a human-readable origin (the user's source line) for errors.
    """

    kernel: str
    args: Mapping[str, str]
    params: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class KernelGraph:
    name: str
    buffers: tuple[Buffer, ...]
    calls: tuple[KernelCall, ...]

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise GraphError(f"graph {self.name!r} has no buffer {name!r}")

    def by_role(self, role: Role) -> list[Buffer]:
        return [b for b in self.buffers if b.role is role]

    @property
    def inputs(self) -> list[Buffer]:
        return self.by_role(Role.INPUT)

    @property
    def outputs(self) -> list[Buffer]:
        return self.by_role(Role.OUTPUT)

    @property
    def weights(self) -> list[Buffer]:
        return self.by_role(Role.WEIGHT)

    def weight_bytes(self) -> int:
        return sum(b.nbytes for b in self.weights)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-friendly dict; weights travel as separate frames."""
        return {
            "name": self.name,
            "buffers": [
                [b.name, b.dtype, list(b.shape), str(b.role)] for b in self.buffers
            ],
            "calls": [
                {
                    "k": c.kernel,
                    "a": dict(c.args),
                    "p": _params_to_wire(c.params),
                    "w": c.where,
                }
                for c in self.calls
            ],
        }

    @classmethod
    def from_wire(cls, data: Any) -> KernelGraph:
        """Parse a wire dict; any structural problem is a GraphError."""
        try:
            buffers = tuple(
                Buffer(str(n), str(d), tuple(int(x) for x in s), Role(r))
                for n, d, s, r in data["buffers"]
            )
            calls = tuple(
                KernelCall(
                    kernel=str(c["k"]),
                    args={str(k): str(v) for k, v in c["a"].items()},
                    params=dict(c.get("p", {})),
                    where=str(c.get("w", "")),
                )
                for c in data["calls"]
            )
            return cls(name=str(data["name"]), buffers=buffers, calls=calls)
        except GraphError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise GraphError(f"malformed graph: {type(exc).__name__}: {exc}") from None


def _params_to_wire(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def validate(graph: KernelGraph) -> None:
    """Raise GraphError naming the first problem; return None if the graph is sound."""
    if not graph.calls:
        raise GraphError(f"graph {graph.name!r} has no kernel calls")
    if len(graph.buffers) > MAX_BUFFERS or len(graph.calls) > MAX_CALLS:
        raise GraphError(
            f"graph {graph.name!r} too large: {len(graph.buffers)} buffers, "
            f"{len(graph.calls)} calls (limits {MAX_BUFFERS}, {MAX_CALLS})"
        )
    buffers = _check_buffers(graph)
    written = {b.name for b in graph.buffers if b.role in (Role.INPUT, Role.WEIGHT)}
    for index, call in enumerate(graph.calls):
        _check_call(graph, index, call, buffers, written)
    unwritten = [b.name for b in graph.outputs if b.name not in written]
    if unwritten:
        raise GraphError(f"graph {graph.name!r}: outputs never written: {unwritten}")
    if not graph.inputs or not graph.outputs:
        raise GraphError(
            f"graph {graph.name!r} needs at least one input and one output"
        )


def _check_buffers(graph: KernelGraph) -> dict[str, Buffer]:
    buffers: dict[str, Buffer] = {}
    for b in graph.buffers:
        if b.name in buffers:
            raise GraphError(f"graph {graph.name!r}: duplicate buffer {b.name!r}")
        if b.dtype not in ITEMSIZE_BYTES:
            raise GraphError(f"buffer {b.name!r}: unknown dtype {b.dtype!r}")
        if not b.shape or any(d < 1 for d in b.shape):
            raise GraphError(
                f"buffer {b.name!r}: shape {list(b.shape)} must be non-empty "
                "and positive"
            )
        buffers[b.name] = b
    return buffers


def _check_call(
    graph: KernelGraph,
    index: int,
    call: KernelCall,
    buffers: dict[str, Buffer],
    written: set[str],
) -> None:
    where = f"call {index} ({call.kernel}{', ' + call.where if call.where else ''})"
    try:
        spec = catalog.get(call.kernel)
    except KeyError:
        raise GraphError(f"{where}: unknown kernel {call.kernel!r}") from None
    try:
        params = spec.with_defaults(call.params)
        shapes = spec.shapes(params)
    except GraphError as exc:
        raise GraphError(f"{where}: {exc}") from None
    bound = _check_operands(where, spec, call, buffers)
    _check_aliases(where, spec, bound, shapes)
    dtypes = {op: buffers[buf].dtype for op, buf in bound.items()}
    for op_name, extent in spec.extents_bytes(params, dtypes).items():
        buf = buffers[bound[op_name]]
        if extent > buf.nbytes:
            raise GraphError(
                f"{where}: operand {op_name!r} viewed as {list(shapes[op_name])} "
                f"{buf.dtype} needs {extent} bytes but buffer {buf.name!r} has "
                f"{buf.nbytes} (would access past its end)"
            )
    for op in spec.operands:
        if op.name in bound and op.access == "read" and bound[op.name] not in written:
            raise GraphError(
                f"{where}: operand {op.name!r} reads buffer {bound[op.name]!r} "
                "before any call writes it"
            )
    for op in spec.operands:
        if op.name in bound and op.access == "write":
            written.add(bound[op.name])


def _check_aliases(
    where: str, spec: Any, bound: dict[str, str], shapes: dict[str, Any]
) -> None:
    """In place is allowed only element for element: an input that shares its
    buffer with the output must be viewed with the output's shape (a broadcast
    or gathered read of memory being overwritten would race on a GPU)."""
    for out in (op for op in spec.operands if op.access == "write"):
        if out.name not in bound:
            continue
        for op in spec.operands:
            shared = op.access == "read" and bound.get(op.name) == bound[out.name]
            if shared and tuple(shapes[op.name]) != tuple(shapes[out.name]):
                raise GraphError(
                    f"{where}: operand {op.name!r} {list(shapes[op.name])} "
                    f"shares buffer {bound[op.name]!r} with output "
                    f"{out.name!r} {list(shapes[out.name])}; in place needs "
                    "equal shapes"
                )


def _check_operands(
    where: str, spec: Any, call: KernelCall, buffers: dict[str, Buffer]
) -> dict[str, str]:
    names = {op.name for op in spec.operands}
    unknown = sorted(set(call.args) - names)
    if unknown:
        raise GraphError(
            f"{where}: unknown operands {unknown}; kernel takes {sorted(names)}"
        )
    reads: set[str] = set()
    writes: set[str] = set()
    for op in spec.operands:
        buf_name = call.args.get(op.name)
        if buf_name is None:
            if not op.optional:
                raise GraphError(f"{where}: missing operand {op.name!r}")
            continue
        buf = buffers.get(buf_name)
        if buf is None:
            raise GraphError(
                f"{where}: operand {op.name!r} names unknown buffer {buf_name!r}"
            )
        if buf.dtype not in op.dtypes:
            raise GraphError(
                f"{where}: operand {op.name!r} is {buf.dtype} but the kernel "
                f"takes {list(op.dtypes)}"
            )
        if op.access == "write":
            if buf.role in (Role.INPUT, Role.WEIGHT):
                raise GraphError(
                    f"{where}: operand {op.name!r} would write {buf.role} "
                    f"buffer {buf_name!r}"
                )
            writes.add(buf_name)
        else:
            reads.add(buf_name)
    if reads & writes and not spec.inplace_ok:
        raise GraphError(
            f"{where}: buffers {sorted(reads & writes)} are both read and written"
        )
    return {k: v for k, v in call.args.items()}
