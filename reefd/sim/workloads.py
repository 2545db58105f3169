"""The DISB workloads on bench/zoo models, as simulator clients.

The workload table itself (which models, priorities and arrivals, and the
reduced zoo variants) is data in bench/workloads.py, re-exported here; this
module owns lowering each model once per (model, batch, reduced) per process
and turning templates into `ClientSpec`s. Needs torch, bench/workloads.py and
bench/zoo.py (run from the repository root with PYTHONPATH=.); lowering
full-size models takes seconds each (DenseNet-201 ~10 s: 2,213 calls).

RT clients get an SLO of `slo_factor` times their model's solo latency on the
simulated device (DISB leaves the SLO to the user; 2x by default).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from reefd.graph import KernelGraph
from reefd.scheduler.padding import DeviceShape
from reefd.scheduler.task import Priority
from reefd.sim.costs import CostSource, solo_duration_us
from reefd.sim.runner import ClientSpec

try:
    from bench.workloads import FIVE, REDUCED, WORKLOADS, ClientTemplate
except ImportError as exc:  # pragma: no cover - an installed reefd without bench
    raise ImportError(
        "the DISB workloads live in bench/workloads.py: run from the repository "
        "root with PYTHONPATH=."
    ) from exc

__all__ = [
    "FIVE",
    "REDUCED",
    "WORKLOADS",
    "ClientTemplate",
    "workload",
    "zoo_graph",
]

_GRAPHS: dict[tuple[str, int, bool], KernelGraph] = {}


def zoo_graph(model: str, batch: int = 1, reduced: bool = False) -> KernelGraph:
    """The lowered graph of a zoo model (cached for this process)."""
    key = (model, batch, reduced)
    if key not in _GRAPHS:
        _GRAPHS[key] = _lower(model, batch, REDUCED[model] if reduced else {})
    return _GRAPHS[key]


def _lower(model: str, batch: int, overrides: dict[str, Any]) -> KernelGraph:
    import torch

    from reefd.clients.lower import lower

    zoo = importlib.import_module("bench.zoo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module, inputs = zoo.build(model, batch, **overrides)
        with torch.no_grad():
            return lower(module, inputs, model).graph
    finally:
        torch.set_num_threads(threads)


def workload(
    name: str,
    costs: CostSource,
    shape: DeviceShape,
    *,
    reduced: bool = False,
    slo_factor: float = 2.0,
    templates: Sequence[ClientTemplate] | None = None,
) -> list[ClientSpec]:
    """The clients of DISB workload `name` (or of `templates`)."""
    if templates is None:
        if name not in WORKLOADS:
            known = ", ".join(WORKLOADS)
            raise ValueError(f"unknown workload {name!r}; choose one of {known}")
        templates = WORKLOADS[name]
    clients = []
    for t in templates:
        graph = zoo_graph(t.model, reduced=reduced)
        slo_ms = None
        if t.priority is Priority.RT:
            slo_ms = slo_factor * solo_duration_us(costs.costs(graph), shape) / 1000
        trace = t.trace
        clients.append(
            ClientSpec(
                t.model,
                graph,
                t.priority,
                t.arrival,  # type: ignore[arg-type]
                t.rate_per_s,
                slo_ms,
                trace_s=trace.offsets_s if trace else (),
                trace_period_s=trace.period_s if trace else None,
            )
        )
    return clients
