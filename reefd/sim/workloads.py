"""The DISB workloads A-E on bench/zoo models, as simulator clients.

Owns the workload table (which models, priorities and arrivals), the reduced
zoo variants used for quick runs, and lowering each model once per (model,
batch, reduced) per process. Needs torch and `bench.zoo` (run from the repo
root with PYTHONPATH=.); lowering full-size models takes seconds each
(DenseNet-201 ~10 s: 2,213 calls).

RT clients get an SLO of `slo_factor` times their model's solo latency on the
simulated device (DISB leaves the SLO to the user; 2x by default).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reefd.graph import KernelGraph
from reefd.scheduler.padding import DeviceShape
from reefd.scheduler.task import Priority
from reefd.sim.costs import CostSource, solo_duration_us
from reefd.sim.runner import Arrival, ClientSpec

FIVE = ("resnet152", "densenet201", "vgg19", "inception_v3", "distilbert")
"""DISB's five BE models (and workload D/E's five RT models)."""

REDUCED: dict[str, dict[str, Any]] = {
    "resnet152": {"layers": (1, 2, 2, 1), "image": 64},
    "densenet201": {"blocks": (2, 2), "growth": 8, "image": 64},
    "vgg19": {"image": 32, "width": 0.125, "hidden": 64},
    "inception_v3": {"reduced": True},
    "distilbert": {"layers": 2, "seq": 32},
}
"""Small variants that lower in about a second each (same model families)."""


@dataclass(frozen=True)
class ClientTemplate:
    model: str
    priority: Priority
    arrival: Arrival
    rate_per_s: float | None = None


def _rt(model: str, arrival: Arrival, rate: float | None) -> ClientTemplate:
    return ClientTemplate(model, Priority.RT, arrival, rate)


def _be(model: str) -> ClientTemplate:
    return ClientTemplate(model, Priority.BE, "closed")


WORKLOADS: dict[str, tuple[ClientTemplate, ...]] = {
    "A": (_rt("vgg19", "uniform", 100.0), _be("resnet152")),
    "B": (_rt("vgg19", "closed", None), _be("resnet152")),
    "C": (_rt("vgg19", "uniform", 100.0), *map(_be, FIVE)),
    "D": (*(_rt(m, "uniform", 20.0) for m in FIVE), *map(_be, FIVE)),
    "E": (*(_rt(m, "poisson", 20.0) for m in FIVE), *map(_be, FIVE)),
}
"""DISB: A: VGG-19 RT at 100 req/s + ResNet-152 BE; B: both closed loop; C: A
with five BE models; D: five RT at 20 req/s each + the five BE; E: D with
Poisson arrivals."""

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

    try:
        zoo = importlib.import_module("bench.zoo")
    except ImportError as exc:
        raise RuntimeError(
            "the DISB workloads need bench/zoo.py: run from the repository root "
            "with PYTHONPATH=."
        ) from exc
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
        clients.append(
            ClientSpec(t.model, graph, t.priority, t.arrival, t.rate_per_s, slo_ms)
        )
    return clients
