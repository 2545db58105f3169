"""What a simulation measured: per-client results, the run's totals, and
percentiles. Pure data plus small derived views; no simulation here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from reefd.scheduler.task import Priority
from reefd.sim.clients import ClientSpec


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass(frozen=True)
class ClientResult:
    """What one client saw. Latencies are arrival to completion, microseconds."""

    client_id: int
    spec: ClientSpec = field(repr=False)
    issued: int
    done: int
    skipped: int
    """Open-loop arrivals dropped because the previous request was still out."""
    slo_met: int
    preemptions: int
    """Resets that hit this client's tasks (BE only)."""
    latencies_us: tuple[float, ...] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.spec.model_name}#{self.client_id}"

    def percentile_us(self, q: float) -> float | None:
        return percentile(self.latencies_us, q)

    @property
    def slo_attainment(self) -> float | None:
        """Requests done within the SLO over requests done or skipped."""
        if self.spec.slo_ms is None or self.done + self.skipped == 0:
            return None
        return self.slo_met / (self.done + self.skipped)


@dataclass(frozen=True)
class SimResult:
    policy: str
    duration_us: float
    seed: int
    clients: tuple[ClientResult, ...]
    preemption_latencies_us: tuple[float, ...]
    """From a BE reset until no BE launch was running (the executor's figure;
    only policies that reset have it)."""
    be_drain_us: tuple[float, ...]
    """For every RT arrival that found BE work on the device's BE stream: the
    time until that stream held no kernel (running or queued). Defined for
    every policy; under one that keeps issuing BE beside RT (streams) it runs
    until the BE stream happens to go idle."""
    launches: int
    padded_launches: int
    padded_be_blocks: int
    """BE virtual blocks those launches ran (0 if the flag stopped them all)."""
    kernels: int
    """Kernels that reached the head of a device stream."""
    device_events: int
    """Block groups that finished (the simulator's unit of work)."""
    spans: int
    """Runs of calls fast-forwarded as one event while alone on the device."""
    splits: int
    """Aggregated groups and spans cut because something else needed the
    device."""
    arrivals: int
    occupancy: float
    """Mean fraction of SM capacity held by CTAs."""
    block_errors: tuple[tuple[int, int, int, int], ...]
    """(task, call, blocks run, n_vb) of finished tasks whose calls did not run
    each virtual block exactly once; empty when all did."""
    blocks_per_call: dict[tuple[int, int], int] | None = field(default=None)
    """(task, call) -> blocks run, for every finished task (record_blocks)."""

    def latencies_us(self, priority: Priority | str) -> list[float]:
        p = Priority(priority)
        return [x for c in self.clients if c.spec.priority is p for x in c.latencies_us]

    def done(self, priority: Priority | str) -> int:
        p = Priority(priority)
        return sum(c.done for c in self.clients if c.spec.priority is p)

    def percentile_us(self, priority: Priority | str, q: float) -> float | None:
        return percentile(self.latencies_us(priority), q)

    @property
    def be_throughput_per_s(self) -> float:
        return self.done(Priority.BE) / (self.duration_us / 1e6)

    @property
    def rt_slo_attainment(self) -> float | None:
        rt = [c for c in self.clients if c.spec.priority is Priority.RT]
        met = sum(c.slo_met for c in rt)
        total = sum(c.done + c.skipped for c in rt)
        return met / total if total else None
