"""What one case of the suite measured, as plain data: per client, the
device's preemptions and utilisation, and a one-second timeline.

Owns `ClientRecord`, `Preempt`, `Span` and `CaseRecord`, and their JSON
round trip (`from_json`), so `python -m bench plot` redraws a results file on
any machine. Both runners fill these: bench/suite/live.py (daemon or eager
processes) and bench/suite/virtual.py (the virtual-time simulator). Imports
the standard library and reefd.sim.results.percentile only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from reefd.sim.results import percentile


@dataclass(frozen=True)
class ClientRecord:
    """One client's requests in the measured window. Latencies in ms: end to
    end as the client saw it (live), arrival to completion (simulator)."""

    name: str
    """Stable across cases: priority, index among that priority, model
    ("rt0-vgg19")."""
    model: str
    priority: str
    arrival: str
    """How requests arrived ("uniform 100/s", "closed", "trace 10.4/s")."""
    done: int
    skipped: int
    """Open-loop arrivals skipped because the previous request was out."""
    errors: int
    slo_ms: float | None
    latencies_ms: tuple[float, ...] = field(repr=False)
    sent_s: tuple[float, ...] = field(default=(), repr=False)
    """Live only: when each request went out, seconds into the window."""

    def percentile_ms(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    @property
    def slo_met(self) -> int:
        if self.slo_ms is None:
            return 0
        return sum(1 for x in self.latencies_ms if x <= self.slo_ms)

    @property
    def slo_attainment(self) -> float | None:
        """Requests within the SLO over requests offered (done, skipped and
        failed): a skipped arrival is a missed one, as in the simulator."""
        offered = self.done + self.skipped + self.errors
        if self.slo_ms is None or offered == 0:
            return None
        return self.slo_met / offered


@dataclass(frozen=True)
class Preempt:
    """BE preemptions in the window: from the reset until no BE kernel ran."""

    count: int
    p50_us: float | None
    p99_us: float | None
    max_us: float | None


@dataclass(frozen=True)
class Span:
    """One bar of a timeline, ms from the start of the measured window."""

    lane: str
    """The client's name."""
    priority: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class CaseRecord:
    label: str
    """A policy name, or a baseline: rt-alone, be-alone, eager."""
    policy: str
    """The daemon's (or simulator's) policy; "-" for eager."""
    duration_s: float
    clients: tuple[ClientRecord, ...] = ()
    preempt: Preempt | None = None
    """None where nothing can preempt (eager processes)."""
    util: float | None = None
    """GPU utilisation as a fraction; see `util_source`."""
    util_source: str = "n/a"
    timeline: tuple[Span, ...] = field(default=(), repr=False)
    timeline_kind: str = ""
    """What the spans are ("kernels ...", "requests ..."); "" when none."""
    timeline_window_s: tuple[float, float] | None = None
    device: str = ""
    wall_s: float = 0.0
    error: str | None = None

    def by_priority(self, priority: str) -> list[ClientRecord]:
        return [c for c in self.clients if c.priority == priority]


def from_json(data: dict[str, Any]) -> CaseRecord:
    """A CaseRecord from its `dataclasses.asdict` JSON."""
    values = {f.name: data.get(f.name) for f in fields(CaseRecord) if f.name in data}
    values["clients"] = tuple(_client(c) for c in data.get("clients", ()))
    if data.get("preempt") is not None:
        values["preempt"] = Preempt(**data["preempt"])
    values["timeline"] = tuple(Span(**s) for s in data.get("timeline", ()))
    if data.get("timeline_window_s") is not None:
        values["timeline_window_s"] = tuple(data["timeline_window_s"])
    return CaseRecord(**values)


def _client(data: dict[str, Any]) -> ClientRecord:
    values = dict(data)
    values["latencies_ms"] = tuple(values.get("latencies_ms", ()))
    values["sent_s"] = tuple(values.get("sent_s", ()))
    return ClientRecord(**values)
