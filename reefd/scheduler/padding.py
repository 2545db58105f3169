"""Dynamic kernel padding: which BE call to run inside an RT kernel's launch.

A padded launch runs an RT kernel's blocks and, in CTA slots the RT kernel
leaves idle, a budgeted slice of one BE call's virtual blocks (REEF's dynamic
kernel padding). The rule (DESIGN.md, "Scheduler"): the merged launch must keep
the RT kernel's occupancy (its registers and shared memory per CTA are the max
of the two bodies, so the BE body must not lower the RT CTAs per SM), and the BE
slice is budgeted to the idle CTA-slot time inside the RT kernel's predicted
duration, so RT finishes when it would alone. Among BE calls that fit, the one
with the lowest predicted interference on the RT task goes first, ties by the
BE task's progress (the order candidates come in). `FitIndex` memoises which
RT calls each BE call cost fits, so padding a long RT run costs a bisect per
candidate, not a test per call.

Pure: costs and the occupancy function are data handed in; no clocks, devices
or profile reads here.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reefd.scheduler.plan import PadSlice
from reefd.scheduler.task import Task


@dataclass(frozen=True)
class CallCost:
    """What the scheduler knows of one kernel call (kernel library + profiles)."""

    n_vb: int
    """Virtual blocks the call runs."""
    registers: int
    """Registers per thread of its body's entry point."""
    smem_bytes: int
    """Shared memory per CTA (static + dynamic)."""
    vb_us: float
    """Predicted solo duration of one virtual block, microseconds."""
    compute_bound: bool | None = None
    """Whether the call is compute-bound (True) or memory-bound (False) on the
    device, from its profile or its arithmetic intensity against the device's
    ridge point; None when unknown. Only the `orion` policy reads it."""


@dataclass(frozen=True)
class DeviceShape:
    """The GPU as padding needs it: SM count and resident CTAs per SM for a
    given (registers per thread, shared memory per CTA)."""

    sms: int
    ctas_per_sm: Callable[[int, int], int]


def rt_duration_us(rt: CallCost, device: DeviceShape) -> float:
    """Predicted solo duration of an RT call: full waves of its blocks."""
    slots = device.sms * max(device.ctas_per_sm(rt.registers, rt.smem_bytes), 1)
    return math.ceil(rt.n_vb / slots) * rt.vb_us


def budget_vbs(rt: CallCost, be: CallCost, device: DeviceShape) -> int:
    """BE virtual blocks that fit in the RT call's idle CTA slots without
    lowering its occupancy or outlasting it; 0 if padding with `be` does not
    pay. Each idle slot runs whole BE blocks back to back within one RT block
    time (the last wave's length), so the padded launch ends when RT would."""
    alone = device.ctas_per_sm(rt.registers, rt.smem_bytes)
    merged = device.ctas_per_sm(
        max(rt.registers, be.registers), max(rt.smem_bytes, be.smem_bytes)
    )
    if alone < 1 or merged < alone or be.vb_us <= 0 or be.vb_us > rt.vb_us:
        return 0
    slots = device.sms * merged
    idle_slots = math.ceil(rt.n_vb / slots) * slots - rt.n_vb
    per_slot = int(rt.vb_us // be.vb_us)
    return min(be.n_vb, idle_slots * per_slot)


class FitIndex:
    """Where in an RT cost table a BE call's slice fits (budget >= 1), so a
    plan finds the next call a candidate can pad without testing every RT
    call.

    A slice fits call i when the merged resources keep the RT occupancy, the
    RT kernel leaves a CTA slot idle, and a BE block is no longer than an RT
    block. The first two depend on the BE call only through its registers
    and shared memory, which take few values: those are memoised per (cost
    table, registers, shared memory) as the list of calls that pass, with
    their RT block times in blocks of `BLOCK` for the third test. Keyed by
    the table's identity (tables are long-lived, one per loaded model; an
    entry keeps its table alive so the identity is not reused); cleared past
    `max_entries`."""

    BLOCK = 32

    def __init__(self, device: DeviceShape, max_entries: int = 10_000) -> None:
        self.device = device
        self.max_entries = max_entries
        self._fits: dict[tuple[int, int, int], _Fits] = {}

    def next_fit(self, rt_costs: Sequence[CallCost], be: CallCost, call: int) -> int:
        """The first RT call at or after `call` that `be` can pad; a number
        past the table's end if none."""
        if be.n_vb < 1 or be.vb_us <= 0:
            return sys.maxsize
        fits = self._lookup(rt_costs, be)
        k = bisect.bisect_left(fits.calls, call)
        n, size = len(fits.calls), self.BLOCK
        while k < n:
            if k % size == 0 and fits.block_max[k // size] < be.vb_us:
                k += size  # no RT block in this stretch is long enough
                continue
            if fits.vb_us[k] >= be.vb_us:
                return fits.calls[k]
            k += 1
        return sys.maxsize

    def _lookup(self, rt_costs: Sequence[CallCost], be: CallCost) -> _Fits:
        key = (id(rt_costs), be.registers, be.smem_bytes)
        hit = self._fits.get(key)
        if hit is not None and hit.table is rt_costs:
            return hit
        probe = CallCost(1, be.registers, be.smem_bytes, 0.0)
        calls = [
            i for i, rt in enumerate(rt_costs) if _room_for(rt, probe, self.device)
        ]
        vb_us = [rt_costs[i].vb_us for i in calls]
        size = self.BLOCK
        block_max = [max(vb_us[k : k + size]) for k in range(0, len(vb_us), size)]
        if len(self._fits) >= self.max_entries:
            self._fits.clear()
        fits = self._fits[key] = _Fits(rt_costs, calls, vb_us, block_max)
        return fits


@dataclass(frozen=True, eq=False)
class _Fits:
    table: Sequence[CallCost]
    calls: list[int]
    vb_us: list[float]
    block_max: list[float]


def _room_for(rt: CallCost, be: CallCost, device: DeviceShape) -> bool:
    """Whether merging `be`'s resources keeps `rt`'s occupancy and `rt`
    leaves a CTA slot idle (the budget rule's tests that ignore block time)."""
    alone = device.ctas_per_sm(rt.registers, rt.smem_bytes)
    merged = device.ctas_per_sm(
        max(rt.registers, be.registers), max(rt.smem_bytes, be.smem_bytes)
    )
    if alone < 1 or merged < alone:
        return False
    slots = device.sms * merged
    return math.ceil(rt.n_vb / slots) * slots > rt.n_vb


class SoloIndex:
    """Predicted solo time of the rest of an RT task from any call on, as
    prefix sums of `rt_duration_us` per cost table (memoised by the table's
    identity, like FitIndex)."""

    def __init__(self, device: DeviceShape, max_entries: int = 1_000) -> None:
        self.device = device
        self.max_entries = max_entries
        self._sums: dict[int, tuple[Sequence[CallCost], list[float]]] = {}

    def remaining_us(self, rt_costs: Sequence[CallCost], call: int) -> float:
        """Solo time of calls `call ..` of the table, microseconds."""
        hit = self._sums.get(id(rt_costs))
        if hit is None or hit[0] is not rt_costs:
            sums = [0.0]
            for cost in reversed(rt_costs):
                sums.append(sums[-1] + rt_duration_us(cost, self.device))
            sums.reverse()
            if len(self._sums) >= self.max_entries:
                self._sums.clear()
            hit = self._sums[id(rt_costs)] = (rt_costs, sums)
        return hit[1][min(call, len(rt_costs))]


def pad_calls(
    rt_costs: Sequence[CallCost],
    first: int,
    end: int,
    candidates: Sequence[tuple[Task, CallCost]],
    index: FitIndex,
) -> list[tuple[int, PadSlice]]:
    """Slices for RT calls `first .. end - 1`: each call, in order, gets the
    first candidate (they come best first: lowest predicted interference,
    then most progress) whose next call fits in it, and each candidate pads
    at most one call. Candidates are (BE task, cost of its next call)."""
    left = list(candidates)
    pads: list[tuple[int, PadSlice]] = []
    call = first
    while left:
        nexts = [index.next_fit(rt_costs, cost, call) for _, cost in left]
        call = min(nexts)
        if call >= end:
            break
        task, cost = left.pop(nexts.index(call))  # the best that fits this call
        budget = budget_vbs(rt_costs[call], cost, index.device)
        pads.append((call, PadSlice(task.task_id, task.next_call, budget)))
        call += 1
    return pads
