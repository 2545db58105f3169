"""The simulated GPU's records: task memory, kernels in flight, block groups.

Owns the data `reefd.sim.gpu.SimGpu` works on, and the capacity unit: one SM
is `SM_UNITS` units, so a CTA of a kernel with k resident CTAs per SM (k <= 32)
takes exactly `SM_UNITS // k`. Also the co-run slowdown hook's type and its
placeholder. Pure data: imports reefd's graph, launch and cost records only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from reefd.backends.device import DeviceLaunch
from reefd.graph import KernelGraph
from reefd.scheduler.padding import CallCost

MAX_CTAS_PER_SM = 32
"""The largest resident-CTA count any supported arch allows (sm_90: 32)."""
SM_UNITS = math.lcm(*range(1, MAX_CTAS_PER_SM + 1))
"""Capacity units per SM: every 1/k of an SM (k <= 32) is a whole number."""


class Running(NamedTuple):
    """One side of a co-run as the slowdown hook sees it."""

    profile_key: str
    """The task's graph key (reefd.profiler.identity), '' if unknown."""
    rt: bool
    """RT work (an RT kernel, or the RT half of a padded launch)."""
    cost: CallCost


Slowdown = Callable[[Running, Sequence[Running]], float]
"""Co-run slowdown of a call's blocks beside the work running at dispatch
(other kernels, and the other half of a padded launch); asked only when
something else runs: alone, a call runs at its solo speed."""


def no_slowdown(own: Running, co_running: Sequence[Running]) -> float:
    """No interference: co-running never slows a block down."""
    return 1.0


@dataclass
class SimTaskMemory:
    """A task's memory on the simulated device: no buffers, only what timing
    and the preemptible forms need."""

    graph: KernelGraph
    costs: tuple[CallCost, ...]
    counters: dict[int, int] = field(default_factory=dict)
    """Call index -> next virtual block to claim (the preemptible and padded
    forms' counter; saturates at the call's n_vb)."""
    blocks_run: dict[int, int] = field(default_factory=dict)
    """Call index -> virtual blocks executed so far (for exactly-once checks)."""
    profile_key: str = ""
    """The graph's key in profiles, for the slowdown hook."""
    complete_below: int = 0
    """Every call below this index ran all its blocks (a fast-forwarded run of
    calls moves it instead of writing a counter per call); `counter` and
    `blocks` read it before the dicts."""

    def counter(self, call: int) -> int:
        if call < self.complete_below:
            return self.costs[call].n_vb
        return self.counters.get(call, 0)

    def blocks(self, call: int) -> int:
        if call < self.complete_below:
            return self.costs[call].n_vb
        return self.blocks_run.get(call, 0)


def us_to_ns(us: float) -> int:
    return max(1, round(us * 1000))


@dataclass(eq=False, slots=True)
class KernelRun:
    """A launch that has reached the head of its stream."""

    launch: DeviceLaunch
    units: int
    """Capacity units per CTA."""
    plain_cost: CallCost | None = None
    """The plain blocks: the plain form's call, or a padded launch's RT call."""
    plain_pending: int = 0
    """Plain blocks not yet placed."""
    plain_ns: int = 0
    claim_cost: CallCost | None = None
    """The claimed blocks: the preemptible form's call, or the padded BE call."""
    claim_memory: SimTaskMemory | None = None
    claim_call: int = 0
    claim_ns: int = 0
    ctas_left: int = 0
    """Claiming CTAs not yet resident."""
    budget_left: int = 0
    """Claims left (n_vb for the preemptible form, budget_vbs when padded)."""
    groups: int = 0
    started_ns: int | None = None
    span: RunSpan | None = None
    """Set while the launch's calls are fast-forwarded as one span."""


@dataclass(eq=False, slots=True)
class RunSpan:
    """Calls `first .. end - 1` of a run, alone on the device and run back to
    back from `start_ns`; `solo` holds their durations as prefix sums."""

    first: int
    end: int
    start_ns: int
    solo: SoloTimes = field(repr=False)
    group: BlockGroup = field(repr=False)
    """The span's one event on the device's heap."""


@dataclass(frozen=True, eq=False)
class SoloTimes:
    """Per-call solo timing of one cost table, as prefix sums over calls:
    `ns[i]` is the time calls 0 .. i-1 take alone, `unit_ns[i]` the capacity
    they hold (units x ns); None in `ns` when some call fits on no SM."""

    ns: tuple[int, ...] | None
    unit_ns: tuple[int, ...]


@dataclass(eq=False, slots=True)
class BlockGroup:
    """CTAs placed at one instant: `rounds` back-to-back rounds of `ctas` CTAs
    each running one block (the last round may run fewer); `blocks` in all."""

    kernel: KernelRun
    claim: bool
    ctas: int
    blocks: int
    start_ns: int
    round_ns: int
    rounds: int
    end_ns: int
    live: bool = True


@dataclass
class GpuStats:
    """Counters over a simulated run."""

    events: int = 0
    groups: int = 0
    kernels: int = 0
    padded_launches: int = 0
    padded_be_blocks: int = 0
    """BE blocks run inside padded launches."""
    splits: int = 0
    """Aggregated groups split because something else needed the device."""
    spans: int = 0
    """Runs of calls fast-forwarded as one event."""
    busy_unit_ns: int = 0
    """Integral of occupied capacity units over time."""
