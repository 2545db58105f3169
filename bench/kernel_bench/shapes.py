"""The zoo's calls: which (kernel, params, bound operands) the benchmark times.

Owns lowering the zoo models on the CPU (`reefd.clients.lower.lower`), collecting
their distinct calls with how often each occurs (`ZooCall`), the shapes file of
`--collect-only` / `--shapes`, the filters of the command line (`restrict`,
`first_per_kernel`) and a call's one-line shape summary (`describe`).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench import zoo
from bench.kernel_bench.progress import log
from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec

if TYPE_CHECKING:
    from reefd.graph import KernelCall

SHAPES_SCHEMA = "reefd.bench.kernels.shapes/1"


@dataclass(frozen=True)
class ZooCall:
    """One distinct call: a kernel, its params (defaults filled in, JSON form),
    the operands bound in the graph, and how often the zoo makes it."""

    kernel: str
    params: dict[str, Any]
    bound: tuple[str, ...]
    count: int = 0
    models: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return call_key(self.kernel, self.params, self.bound)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def canonical_params(spec: KernelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params with defaults filled in, `ints` as lists (JSON round-trips it)."""
    return {k: _jsonable(v) for k, v in spec.with_defaults(params).items()}


def call_key(kernel: str, params: Mapping[str, Any], bound: Sequence[str]) -> str:
    return json.dumps([kernel, params, sorted(bound)], sort_keys=True)


def lower_model(name: str, batch: int, **overrides: Any) -> list[KernelCall]:
    """The kernel calls of one zoo model lowered on the CPU."""
    from reefd.clients.lower import lower

    model, inputs = zoo.build(name, batch=batch, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return list(lower(model, inputs, name=name).graph.calls)


def collect(graphs: Sequence[tuple[str, Sequence[KernelCall]]]) -> list[ZooCall]:
    """Distinct calls over (model name, calls) pairs, with counts, sorted by
    kernel and then most frequent first."""
    found: dict[str, ZooCall] = {}
    for model, calls in graphs:
        for call in calls:
            spec = catalog.get(call.kernel)
            params = canonical_params(spec, call.params)
            bound = tuple(op.name for op in spec.operands if op.name in call.args)
            key = call_key(call.kernel, params, bound)
            old = found.get(key) or ZooCall(call.kernel, params, bound)
            models = dict(old.models)
            models[model] = models.get(model, 0) + 1
            found[key] = replace(old, count=old.count + 1, models=models)
    return sorted(found.values(), key=lambda c: (c.kernel, -c.count))


def lower_zoo(
    models: Sequence[str], batch: int
) -> tuple[list[ZooCall], dict[str, str]]:
    """Lower every model (progress on stderr) and collect its distinct calls;
    a model that fails to lower is reported (model -> error) and skipped."""
    graphs = []
    failures: dict[str, str] = {}
    for i, name in enumerate(models, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(models)}] lowering {name} (batch {batch}) ...")
        try:
            calls = lower_model(name, batch)
        except Exception as exc:  # reported; the other models still run
            failures[name] = f"{type(exc).__name__}: {exc}"
            log(f"[{i}/{len(models)}] {name}: lowering FAILED: {failures[name]}")
            continue
        distinct = len(collect([(name, calls)]))
        log(
            f"[{i}/{len(models)}] {name}: {len(calls)} calls, {distinct} distinct "
            f"({time.perf_counter() - start:.1f} s)"
        )
        graphs.append((name, calls))
    return collect(graphs), failures


def shapes_json(
    calls: Sequence[ZooCall],
    models: Sequence[str],
    batch: int,
    failures: Mapping[str, str] | None = None,
) -> dict:
    return {
        "schema": SHAPES_SCHEMA,
        "models": list(models),
        "batch": batch,
        "torch": torch.__version__,
        "lowering_failures": dict(failures or {}),
        "calls": [asdict(c) for c in calls],
    }


def read_shapes(path: Path) -> tuple[list[ZooCall], dict[str, Any]]:
    """Calls from a `--collect-only` file, and its header."""
    data = json.loads(path.read_text())
    if data.get("schema") != SHAPES_SCHEMA:
        raise ValueError(f"{path}: not a shapes file (schema {data.get('schema')!r})")
    calls = [
        ZooCall(c["kernel"], c["params"], tuple(c["bound"]), c["count"], c["models"])
        for c in data["calls"]
    ]
    return calls, {k: v for k, v in data.items() if k != "calls"}


def describe(spec: KernelSpec, params: Mapping[str, Any], bound: Sequence[str]) -> str:
    """A shape summary: operand shapes (read -> written), then the params that
    are not dimensions (required ints) and differ from their defaults."""

    def dims(shape: Sequence[int]) -> str:
        return "x".join(map(str, shape))

    shapes = spec.shapes(spec.with_defaults(params))
    reads = [o for o in spec.operands if o.access == "read" and o.name in bound]
    writes = [o for o in spec.operands if o.access == "write" and o.name in bound]
    text = " ".join(f"{o.name}[{dims(shapes[o.name])}]" for o in reads)
    text += " -> " + " ".join(f"{o.name}[{dims(shapes[o.name])}]" for o in writes)
    extras = []
    for p in spec.params:
        value = params.get(p.name)
        dimension = p.kind == "int" and p.required
        if dimension or value is None or _jsonable(p.default) == value:
            continue
        extras.append(f"{p.name}={dims(value) if p.kind == 'ints' else value}")
    return " ".join([text, *extras])


def restrict(calls: Sequence[ZooCall], models: Sequence[str]) -> list[ZooCall]:
    """The calls of `models` only, with their counts over those models."""
    out = []
    for call in calls:
        mine = {m: n for m, n in call.models.items() if m in models}
        if mine:
            out.append(replace(call, count=sum(mine.values()), models=mine))
    return out


def first_per_kernel(calls: Sequence[ZooCall], n: int) -> list[ZooCall]:
    """The `n` most frequent calls of each kernel (calls sorted as `collect`)."""
    seen: dict[str, int] = {}
    out = []
    for call in sorted(calls, key=lambda c: (c.kernel, -c.count)):
        seen[call.kernel] = seen.get(call.kernel, 0) + 1
        if seen[call.kernel] <= n:
            out.append(call)
    return out
