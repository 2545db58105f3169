"""Dynamic kernel padding: which BE call to run inside an RT kernel's launch.

A padded launch runs an RT kernel's blocks and, in CTA slots the RT kernel
leaves idle, a budgeted slice of one BE call's virtual blocks (REEF's dynamic
kernel padding). The rule (DESIGN.md, "Scheduler"): the merged launch must keep
the RT kernel's occupancy (its registers and shared memory per CTA are the max
of the two bodies, so the BE body must not lower the RT CTAs per SM), and the BE
slice is budgeted to the idle CTA-slot time inside the RT kernel's predicted
duration, so RT finishes when it would alone. Among BE calls that fit, the one
with the lowest predicted interference on the RT task goes first, ties by the
BE task's progress (the order candidates come in).

Pure: costs and the occupancy function are data handed in; no clocks, devices
or profile reads here.
"""

from __future__ import annotations

import math
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


def choose_pad(
    rt: CallCost,
    candidates: Sequence[tuple[Task, CallCost, float]],
    device: DeviceShape,
) -> PadSlice | None:
    """The BE slice to pad `rt` with: candidates are (BE task whose next call
    would run, that call's cost, predicted interference); lowest interference
    first, then candidate order (most progress first)."""
    ranked = sorted(enumerate(candidates), key=lambda c: (c[1][2], c[0]))
    for _, (task, cost, _) in ranked:
        budget = budget_vbs(rt, cost, device)
        if budget >= 1:
            return PadSlice(task.task_id, task.next_call, budget)
    return None
