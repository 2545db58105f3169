"""Dynamic batch: one registered graph serves every batch size up to a maximum.

A graph with a `BatchRule` is stored at its maximum batch. Each int param and
each input/output dim that depends on the batch size has a per-sample slope, so
its value at batch b is `value_at_max - (max_batch - b) * slope`. Scratch
buffers keep their size at the maximum (each value only shrinks with b) and
weights never change. `derive` builds the rule from two lowerings of one model
at different batch sizes and refuses a model that is not affine in the batch.

Imports reefd.errors and reefd.graph only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reefd.errors import GraphError, RequestError
from reefd.graph import KernelCall, KernelGraph, Role, validate

MAX_BATCH_LIMIT = 4096
"""Largest max_batch a graph may declare (each batch size is validated once)."""

Slope = int | tuple[int, ...]


@dataclass(frozen=True)
class BatchRule:
    """How a graph stored at `max_batch` changes per sample fewer."""

    max_batch: int
    params: tuple[tuple[int, str, Slope], ...]
    """(call index, param name, slope) for every param that depends on b."""
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    """(input or output buffer name, slope of each dim)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "max": self.max_batch,
            "params": [
                [i, name, list(s) if isinstance(s, tuple) else s]
                for i, name, s in self.params
            ],
            "shapes": [[name, list(s)] for name, s in self.shapes],
        }

    @classmethod
    def from_wire(cls, data: Any) -> BatchRule:
        try:
            return cls(
                int(data["max"]),
                tuple(
                    (
                        int(i),
                        str(n),
                        tuple(int(x) for x in s) if isinstance(s, list) else int(s),
                    )
                    for i, n, s in data["params"]
                ),
                tuple((str(n), tuple(int(x) for x in s)) for n, s in data["shapes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphError(
                f"malformed batch rule: {type(exc).__name__}: {exc}"
            ) from None


def at_batch(graph: KernelGraph, batch: int, rule: BatchRule) -> KernelGraph:
    """The graph for `batch` samples (1 <= batch <= rule.max_batch)."""
    if not 1 <= batch <= rule.max_batch:
        raise RequestError(
            f"batch {batch} is outside 1..{rule.max_batch} (the registered maximum)"
        )
    fewer = rule.max_batch - batch
    calls = list(graph.calls)
    for index, name, slope in rule.params:
        call = calls[index]
        value = call.params[name]
        if isinstance(slope, tuple):
            value = tuple(v - fewer * s for v, s in zip(value, slope, strict=True))
        else:
            value = value - fewer * slope
        calls[index] = replace(call, params={**call.params, name: value})
    slopes = dict(rule.shapes)
    buffers = tuple(
        replace(
            b,
            shape=tuple(
                d - fewer * s for d, s in zip(b.shape, slopes[b.name], strict=True)
            ),
        )
        if b.name in slopes
        else b
        for b in graph.buffers
    )
    return KernelGraph(graph.name, buffers, tuple(calls))


def validate_all(graph: KernelGraph, rule: BatchRule) -> None:
    """Validate the graph at every batch size; GraphError names the first bad one."""
    if not 1 <= rule.max_batch <= MAX_BATCH_LIMIT:
        raise GraphError(f"max_batch={rule.max_batch} must be in 1..{MAX_BATCH_LIMIT}")
    known = {b.name: b for b in graph.buffers}
    for name, slope in rule.shapes:
        buf = known.get(name)
        if buf is None or buf.role not in (Role.INPUT, Role.OUTPUT):
            raise GraphError(f"batch rule: {name!r} is not an input or output buffer")
        if len(slope) != len(buf.shape):
            raise GraphError(f"batch rule: {name!r} slope has the wrong rank")
    for index, name, _ in rule.params:
        if not 0 <= index < len(graph.calls) or name not in graph.calls[index].params:
            raise GraphError(f"batch rule: call {index} has no param {name!r}")
    for batch in range(1, rule.max_batch + 1):
        try:
            validate(at_batch(graph, batch, rule))
        except GraphError as exc:
            raise GraphError(f"at batch {batch}: {exc}") from None


def batch_of(graph: KernelGraph, rule: BatchRule, shapes: Sequence[tuple]) -> int:
    """The batch size that input shapes (graph input order) describe."""
    slopes = dict(rule.shapes)
    for buf, shape in zip(graph.inputs, shapes, strict=False):
        slope = slopes.get(buf.name)
        if slope is None or len(shape) != len(buf.shape):
            continue
        for d, s in enumerate(slope):
            if s:
                fewer, rest = divmod(buf.shape[d] - shape[d], s)
                batch = rule.max_batch - fewer
                if rest == 0 and 1 <= batch <= rule.max_batch:
                    return batch
                raise RequestError(
                    f"input {buf.name!r} dim {d} is {shape[d]}: not a batch of "
                    f"1..{rule.max_batch} (each sample adds {s})"
                )
    return rule.max_batch


def derive(
    low: KernelGraph, high: KernelGraph, low_batch: int, high_batch: int, max_batch: int
) -> tuple[KernelGraph, BatchRule]:
    """The graph at `max_batch` and its rule, from lowerings at two batch sizes.

    `high` must come from the lowering at `max_batch` (its scratch sizes are
    kept). Raises GraphError naming the first thing that is not affine in the
    batch size: a different kernel sequence, weight, or a float/str param.
    """
    if high_batch != max_batch or low_batch >= high_batch:
        raise GraphError("derive needs low_batch < high_batch == max_batch")
    step = high_batch - low_batch
    fixed_low = [b for b in low.buffers if b.role is not Role.SCRATCH]
    fixed_high = [b for b in high.buffers if b.role is not Role.SCRATCH]
    if len(low.calls) != len(high.calls) or len(fixed_low) != len(fixed_high):
        raise GraphError("the two lowerings have different kernel sequences")
    roles_low = {b.name: b.role for b in low.buffers}
    roles_high = {b.name: b.role for b in high.buffers}
    params: list[tuple[int, str, Slope]] = []
    for i, (a, b) in enumerate(zip(low.calls, high.calls, strict=True)):
        _same_call(i, a, b, roles_low, roles_high)
        for name, hi_value in b.params.items():
            slope = _slope(a.params.get(name), hi_value, step)
            if slope is None:
                raise GraphError(
                    f"call {i} ({b.kernel}) param {name!r} is {a.params.get(name)!r} "
                    f"at batch {low_batch} and {hi_value!r} at {high_batch}: "
                    "not affine in the batch size"
                )
            if slope not in (0, ()) and any(_as_tuple(slope)):
                params.append((i, name, slope))
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for a, b in zip(fixed_low, fixed_high, strict=True):
        if (a.name, a.dtype, a.role) != (b.name, b.dtype, b.role):
            raise GraphError(f"buffers {a.name!r} and {b.name!r} do not correspond")
        if b.role in (Role.INPUT, Role.OUTPUT):
            slope = _slope(a.shape, b.shape, step)
            if slope is None:
                raise GraphError(f"buffer {b.name!r} is not affine in the batch size")
            if any(slope):
                shapes.append((b.name, slope))
        elif b.role is Role.WEIGHT and a.shape != b.shape:
            raise GraphError(f"weight {b.name!r} changes with the batch size")
    return high, BatchRule(max_batch, tuple(params), tuple(shapes))


def _same_call(
    i: int,
    a: KernelCall,
    b: KernelCall,
    roles_low: dict[str, Role],
    roles_high: dict[str, Role],
) -> None:
    """Same kernel and operands; non-scratch operands bind the same buffers
    (scratch slots may be assigned differently at another batch size)."""
    if a.kernel != b.kernel or set(a.args) != set(b.args):
        raise GraphError(f"call {i}: {a.kernel} at one batch size, {b.kernel} at other")
    for op, name in b.args.items():
        role = roles_high[name]
        if roles_low[a.args[op]] is not role or (
            role is not Role.SCRATCH and a.args[op] != name
        ):
            raise GraphError(f"call {i} ({b.kernel}): operand {op!r} binds differently")


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _slope(low: Any, high: Any, step: int) -> Slope | None:
    """Per-sample slope of an int or int tuple, 0 for equal values, else None."""
    if isinstance(high, bool) or isinstance(low, bool):
        return 0 if low == high else None
    if isinstance(high, int) and isinstance(low, int):
        diff, rest = divmod(high - low, step)
        return diff if rest == 0 else None
    if isinstance(high, (tuple, list)) and isinstance(low, (tuple, list)):
        if len(low) != len(high):
            return None
        parts = [_slope(x, y, step) for x, y in zip(low, high, strict=True)]
        if any(p is None or isinstance(p, tuple) for p in parts):
            return None
        return tuple(parts)  # type: ignore[arg-type]
    return 0 if low == high else None
