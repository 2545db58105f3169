"""OrionPolicy ("orion"): the Orion baseline (Strati et al., EuroSys 2024).

Orion shares a GPU kernel by kernel with a profile per kernel (compute- or
memory-bound, SMs needed, solo duration); it never preempts or drops work, it
only decides when a BE kernel may be launched. As implemented here:

- RT tasks go on the RT stream as they come: earliest deadline first, one task
  at a time (as in reef), plain kernels.
- No RT work live: BE runs fill `be_inflight_cap`, plain, most progress first
  (as `wait` does).
- RT work live: a BE task's next call (one call, plain, on the BE stream) is
  launched only if
  1. class: its `CallCost.compute_bound` is known and the opposite of every
     RT call in flight;
  2. SMs: its SM need (blocks / resident blocks per SM, at most every SM) fits
     in the SMs the largest RT call in flight leaves free (BE calls share one
     in-order stream, so they run one after another: only its own need counts);
  3. duration: the solo time of the BE calls in flight plus its own is at most
     `dur_threshold` (2.5 %) of the RT task's solo latency. This is Orion's
     DUR_THRESHOLD (2.5 % of the high-priority request's latency): RT can wait
     behind BE kernels it cannot stop, so their outstanding work is bounded;
  4. it fits under `be_inflight_cap`.
  The `be_candidates` best BE tasks are tried, one call each per plan.
- The RT call "currently running": while BE work exists the RT task is issued
  in windows of `rt_window_calls` calls, so the RT calls in flight are the one
  running and the few queued behind it, and a BE call must suit them all (it
  may overlap any of them). With no BE work the RT task goes as one run, and
  BE that arrives meanwhile waits for the task to end.
- Without profiles it degrades to `wait`: with no device shape, RT costs or BE
  costs (or a class unknown, or a BE call in flight of unknown cost), no BE
  call is launched while RT work is live. Never resets, never preempts.

Pure decision code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

import itertools
import math

from reefd.scheduler.padding import CallCost, DeviceShape, SoloIndex, rt_duration_us
from reefd.scheduler.plan import Form, Launch, Plan, Stream
from reefd.scheduler.policy import Policy, fill_be, next_launches
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Priority, Task


class OrionPolicy(Policy):
    name = "orion"
    caps_be_inflight = True
    dur_threshold = 0.025
    """BE solo time allowed in flight beside RT work, as a fraction of the RT
    task's solo latency (Orion's DUR_THRESHOLD)."""
    rt_window_calls = 4
    """RT calls in flight while BE work exists (which RT calls a BE call is
    checked against)."""
    be_candidates = 8
    """BE tasks tried per plan while RT work is live (the most progressed)."""

    def __init__(self, device: DeviceShape | None = None) -> None:
        self._device: DeviceShape | None = None
        self._solo: SoloIndex | None = None
        if device is not None:
            self.use_device(device)

    def use_device(self, device: DeviceShape) -> None:
        """Co-run by SM need from now on (the composition root calls this
        once the device is open and knows its SMs)."""
        self._device = device
        self._solo = SoloIndex(device)

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        launches = self._plan_rt(state)
        if state.rt_active():
            launches += self._co_run(state, launches)
        else:
            launches += self._fill_be(state)
        return Plan(launches=launches)

    def _plan_rt(self, state: SchedulerState) -> list[Launch]:
        task = state.next_rt()
        if task is None or not state.can_issue(task):
            return []
        if state.inflight(Stream.RT) > task.inflight:  # EDF at task boundaries
            return []
        n = task.remaining_calls
        if self._device is not None and task.costs is not None and _be_work(state):
            n = self.rt_window_calls - task.inflight
        return next_launches(task, n, Stream.RT, Form.PLAIN)

    def _fill_be(self, state: SchedulerState) -> list[Launch]:
        return fill_be(state, Form.PLAIN)

    def _co_run(self, state: SchedulerState, rt_launches: list[Launch]) -> list[Launch]:
        """BE calls that may run beside the RT calls in flight (rules 1-4)."""
        room = state.be_inflight_cap - state.inflight(Stream.BE)
        window = self._rt_window(state, rt_launches)
        if room <= 0 or window is None or self._solo is None:
            return []
        rt, rt_calls = window
        assert rt.costs is not None and self._device is not None
        rt_class = {cost.compute_bound for cost in rt_calls}
        if len(rt_class) != 1 or None in rt_class:
            return []
        free_sms = self._device.sms - max(self._sms(cost) for cost in rt_calls)
        left_us = self.dur_threshold * self._solo.remaining_us(rt.costs, 0)
        left_us -= self._be_outstanding_us(state)
        launches: list[Launch] = []
        for be in itertools.islice(state.iter_be_candidates(), self.be_candidates):
            if room <= 0:
                break
            if be.costs is None:
                continue
            cost = be.costs[be.next_call]
            if cost.compute_bound is None or cost.compute_bound in rt_class:
                continue
            solo_us = self._solo_us(cost)
            if self._sms(cost) > free_sms or solo_us > left_us:
                continue
            launches += next_launches(be, 1, Stream.BE, Form.PLAIN)
            room -= 1
            left_us -= solo_us
        return launches

    def _rt_window(
        self, state: SchedulerState, rt_launches: list[Launch]
    ) -> tuple[Task, list[CallCost]] | None:
        """The RT task with calls in flight (after this plan) and those calls'
        costs; None when unknown or longer than a window (issued whole)."""
        if self._device is None:
            return None
        if rt_launches:
            (launch,) = rt_launches
            task = state.tasks[launch.task_id]
            end = launch.end_call
        else:
            busy = (t for t in state.rt_queue if t.inflight > 0)
            task = next(busy, None)
            if task is None or state.inflight(Stream.RT) != task.inflight:
                return None  # no RT call out, or a cancelled task's
            end = task.next_call
        first = task.next_call - task.inflight
        if task.costs is None or not 0 < end - first <= self.rt_window_calls:
            return None
        return task, list(task.costs[first:end])

    def _be_outstanding_us(self, state: SchedulerState) -> float:
        """Solo time of the BE calls in flight (inf if one's cost is unknown).
        Orion never drops or preempts, so a BE task's calls in flight are the
        `inflight` calls before its `next_call`."""
        total = 0.0
        for task_id in state.outstanding:
            task = state.tasks[task_id]
            if task.priority is not Priority.BE:
                continue
            if task.costs is None:
                return math.inf
            first = task.next_call - task.inflight
            total += sum(self._solo_us(c) for c in task.costs[first : task.next_call])
        return total

    def _sms(self, cost: CallCost) -> int:
        """SMs a call's blocks occupy alone: blocks / resident blocks per SM."""
        assert self._device is not None
        per_sm = max(1, self._device.ctas_per_sm(cost.registers, cost.smem_bytes))
        return min(self._device.sms, math.ceil(cost.n_vb / per_sm))

    def _solo_us(self, cost: CallCost) -> float:
        assert self._device is not None
        return rt_duration_us(cost, self._device)


def _be_work(state: SchedulerState) -> bool:
    """Whether BE work is on the device or waiting to be issued."""
    if state.inflight(Stream.BE) > 0:
        return True
    return next(state.iter_be_candidates(), None) is not None
