"""The DISB workloads as data: which models, priorities and arrival processes.

The one source of truth for the workload table: the virtual-time simulator
(`reefd.sim.workloads`), `python -m reefd.sim`, bench/sim_scale.py and the
suite (`python -m bench run`) all read `WORKLOADS`. Batch 1 everywhere; a
run's length is the runner's (60 s by default in the suite).

Arrivals follow DISB: one request at a time per client. `closed`: the next
request goes out the instant the last returns. `uniform` (every 1/rate s,
from a random phase), `poisson` (exponential gaps) and `trace` (the offsets
of a `bench.traces.Trace`, looped): an arrival that comes while the client's
previous request is still out is skipped and counted, never queued.

Also owns `REDUCED`, the small variants of the five DISB models (same
families, about a second each to lower) that `--reduced` runs use. Imports
bench.traces and reefd's Priority only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.traces import Trace, azure_traces, perception_traces
from reefd.scheduler.task import Priority

FIVE = ("resnet152", "densenet201", "vgg19", "inception_v3", "distilbert")
"""DISB's five BE models (and workload D/E's five RT models)."""

REDUCED: dict[str, dict[str, Any]] = {
    "resnet152": {"layers": (1, 2, 2, 1), "image": 64},
    "densenet201": {"blocks": (2, 2), "growth": 8, "image": 64},
    "vgg19": {"image": 32, "width": 0.125, "hidden": 64},
    "inception_v3": {"reduced": True},
    "distilbert": {"layers": 2, "seq": 32},
}
"""bench/zoo.py overrides of the small variants (same model families)."""

ARRIVALS = ("closed", "uniform", "poisson", "trace")

TRACE_SEED = 0
"""The trace workloads' traces are part of their definition: one seed."""
TRACE_PERIOD_S = 60.0
"""Length of the generated traces (longer runs loop them)."""
AZURE_FUNCTIONS = 10
AZURE_RATE_PER_S = 100.0


@dataclass(frozen=True)
class ClientTemplate:
    """One client of a workload."""

    model: str
    """A bench/zoo.py model name."""
    priority: Priority
    arrival: str
    """closed, uniform, poisson or trace."""
    rate_per_s: float | None = None
    """Requests per second of a uniform or poisson client."""
    trace: Trace | None = None
    """A trace client's arrivals."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        if self.arrival not in ARRIVALS:
            raise ValueError(
                f"{self.model}: arrival {self.arrival!r} not in {ARRIVALS}"
            )
        if (self.arrival == "trace") != (self.trace is not None):
            raise ValueError(f"{self.model}: a trace goes with arrival 'trace' only")

    @property
    def mean_rate_per_s(self) -> float | None:
        """Offered requests per second; None for a closed loop."""
        return self.trace.rate_per_s if self.trace else self.rate_per_s

    def describe(self) -> str:
        rate = self.mean_rate_per_s
        return self.arrival if rate is None else f"{self.arrival} {rate:.3g}/s"


def _rt(model: str, arrival: str, rate: float | None) -> ClientTemplate:
    return ClientTemplate(model, Priority.RT, arrival, rate)


def _be(model: str) -> ClientTemplate:
    return ClientTemplate(model, Priority.BE, "closed")


def _traced(model: str, trace: Trace) -> ClientTemplate:
    return ClientTemplate(model, Priority.RT, "trace", trace=trace)


def _real() -> tuple[ClientTemplate, ...]:
    traces = perception_traces(TRACE_PERIOD_S, TRACE_SEED)
    return (*(_traced(m, traces[m]) for m in FIVE), *map(_be, FIVE))


def _azure() -> tuple[ClientTemplate, ...]:
    traces = azure_traces(AZURE_FUNCTIONS, AZURE_RATE_PER_S, TRACE_PERIOD_S, TRACE_SEED)
    rt = (_traced(FIVE[i % len(FIVE)], t) for i, t in enumerate(traces))
    return (*rt, *map(_be, FIVE))


WORKLOADS: dict[str, tuple[ClientTemplate, ...]] = {
    "A": (_rt("vgg19", "uniform", 100.0), _be("resnet152")),
    "B": (_rt("vgg19", "closed", None), _be("resnet152")),
    "C": (_rt("vgg19", "uniform", 100.0), *map(_be, FIVE)),
    "D": (*(_rt(m, "uniform", 20.0) for m in FIVE), *map(_be, FIVE)),
    "E": (*(_rt(m, "poisson", 20.0) for m in FIVE), *map(_be, FIVE)),
    "REAL": _real(),
    "AZURE": _azure(),
}

DESCRIPTIONS: dict[str, str] = {
    "A": "VGG-19 RT uniform 100 req/s + ResNet-152 BE closed loop",
    "B": "VGG-19 RT closed loop + ResNet-152 BE closed loop",
    "C": "VGG-19 RT uniform 100 req/s + five BE (ResNet-152, DenseNet-201, "
    "VGG-19, Inception-v3, DistilBERT)",
    "D": "the five as RT, uniform 20 req/s each, + the same five as BE",
    "E": "as D with Poisson arrivals",
    "REAL": "the five RT driven by a synthetic perception-pipeline trace "
    "(~43 req/s in all; stand-in for DISB's Apollo trace) + the five BE",
    "AZURE": f"{AZURE_FUNCTIONS} RT functions (the five models in turn) driven by "
    f"Azure-Functions-style bursty traces, {AZURE_RATE_PER_S:g} req/s in all, "
    "+ the five BE; not a DISB workload, meant for the simulator",
}
"""One line per workload, for --help, tables and the README."""
