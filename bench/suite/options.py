"""What a suite run is asked to do: `SuiteOptions`, the cases in run order,
and the names and windows every runner shares.

A case is a policy of the daemon (every name in reefd.config.POLICIES) or a
baseline: `rt-alone` (only the RT clients) and `be-alone` (only the BE
clients), both under `ALONE_POLICY`, and `eager` (every client a plain torch
process on the device, no daemon: what a user does today). The alone cases
always run first: the others' ratios and, live, their SLOs come from them.
Imports bench.workloads and reefd.config only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.workloads import ClientTemplate
from reefd.config import POLICIES

BACKENDS = ("cuda", "cpu", "sim", "simulate")
"""cuda and cpu: a live daemon on that device; sim: a live daemon on the
simulated GPU paced by the wall clock; simulate: the virtual-time runner."""
LIVE_BACKENDS = ("cuda", "cpu", "sim")
EAGER_BACKENDS = ("cuda", "cpu")
BASELINES = ("rt-alone", "be-alone", "eager")
ALONE_POLICY = "exclusive"
"""Policy of the alone cases: plain kernels, one task at a time."""


@dataclass(frozen=True)
class SuiteOptions:
    workload: str = "A"
    backend: str = "cpu"
    duration_s: float = 60.0
    """Measured seconds per case (virtual seconds on `simulate`)."""
    reduced: bool = False
    """The zoo's small variants of the models (quick on a CPU)."""
    cases: tuple[str, ...] = ()
    """Policies and baselines, in run order (see `order_cases`)."""
    seed: int = 0
    """Arrival phases and Poisson gaps (the trace workloads' traces are fixed)."""
    slo_factor: float = 2.0
    """RT SLO = this x the model's latency alone (live: its RT-alone p50;
    simulate: its solo time on the simulated device)."""
    slo_ms: float | None = None
    """One SLO for every RT client instead of `slo_factor`."""
    be_inflight_cap: int = 2
    """BE calls on the device at once (the daemon's --be-inflight-cap)."""
    timeline_case: str = ""
    """Which case's second to draw ('' = reef if it runs, else the first
    case with RT and BE clients)."""
    daemon_args: tuple[str, ...] = ()
    """Further reefd flags for every live case."""
    sms: int = 132
    """SMs of the simulated GPU (simulate only)."""


def default_cases(backend: str) -> tuple[str, ...]:
    eager = ("eager",) if backend in EAGER_BACKENDS else ()
    return ("rt-alone", "be-alone", *POLICIES, *eager)


def order_cases(names: Sequence[str], backend: str) -> tuple[str, ...]:
    """Alone cases first, eager last, the rest as given; raises ValueError
    naming what is unknown or impossible on `backend`."""
    known = (*POLICIES, *BASELINES)
    if unknown := [n for n in names if n not in known]:
        raise ValueError(f"unknown policies {unknown}; known: {', '.join(known)}")
    if "eager" in names and backend not in EAGER_BACKENDS:
        raise ValueError(
            f"eager runs torch processes on a real device: use --backend cuda or "
            f"cpu, not {backend}"
        )
    unique = list(dict.fromkeys(names))
    first = [n for n in ("rt-alone", "be-alone") if n in unique]
    last = [n for n in ("eager",) if n in unique]
    return (*first, *[n for n in unique if n not in BASELINES], *last)


def selected(label: str, templates: Sequence[ClientTemplate]) -> list[int]:
    """Indices of the workload's clients that a case runs."""
    want = {"rt-alone": "rt", "be-alone": "be"}.get(label)
    return [i for i, t in enumerate(templates) if want in (None, t.priority)]


def client_names(templates: Sequence[ClientTemplate]) -> list[str]:
    """Names stable across cases: "rt0-vgg19", "be0-resnet152", ..."""
    seen: dict[str, int] = {}
    out = []
    for t in templates:
        k = seen.get(t.priority, 0)
        seen[t.priority] = k + 1
        out.append(f"{t.priority}{k}-{t.model}")
    return out


def timeline_case(opts: SuiteOptions, templates: Sequence[ClientTemplate]) -> str:
    if opts.timeline_case:
        return opts.timeline_case
    mixed = [c for c in opts.cases if c not in ("rt-alone", "be-alone")]
    if "reef" in mixed:
        return "reef"
    return mixed[0] if mixed else (opts.cases[0] if opts.cases else "")


def timeline_window_s(duration_s: float) -> tuple[float, float]:
    """The second drawn: the middle of the window (all of it if shorter)."""
    length = min(1.0, duration_s)
    start = max(0.0, duration_s / 2 - length / 2)
    return start, start + length
