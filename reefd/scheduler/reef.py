"""ReefPolicy ("reef"): RT first, BE preempted at virtual-block boundaries.

While RT work is live: reset BE once per RT busy period (drop queued BE launches,
raise the preempt flag), run RT tasks earliest deadline first, one task at a
time, and issue no BE work on the BE stream; where the device shape and call
costs are known, each RT call may carry a budgeted slice of a BE call in the
same launch (dynamic kernel padding, see padding.py). With no RT work: fill the
BE in-flight cap with preemptible launches, most progressed BE task first.

The class attributes `drops_be`, `preempts_be` and `be_form` are what the
baselines `reset_hq` and `wait` change; everything else is shared. Pure decision
code: must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import replace

from reefd.scheduler.padding import DeviceShape, FitIndex, SoloIndex, pad_calls
from reefd.scheduler.plan import Form, Launch, Plan, Stream
from reefd.scheduler.policy import Policy, fill_be, next_launches
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Task

Interference = Callable[[Task, Task], "tuple[float, float] | None"]
"""What the interference model predicts for an RT task (first) beside a BE
task (second): (slowdown, conservative slowdown), as together / alone (1.0 =
none); None when it knows nothing of the pair."""


class ReefPolicy(Policy):
    name = "reef"
    caps_be_inflight = True
    drops_be = True
    """On RT arrival, drop BE launches still in the host queue."""
    preempts_be = True
    """On RT arrival, also raise the preempt flag for running BE kernels."""
    be_form = Form.PREEMPTIBLE
    pad_candidates = 4
    """BE tasks considered for padding per RT plan (the most progressed)."""
    preempts_rt = True
    """An RT task with an earlier deadline drops the queued calls of a running
    RT task with a later one and goes first (at the next kernel boundary)."""
    rt_window_calls = 16
    """While BE calls are still on the device (a preemption draining), RT calls
    in flight are kept to this many, so the RT calls issued once the BE task
    is back can be padded with it; otherwise a whole RT task goes at once."""

    def __init__(
        self,
        device: DeviceShape | None = None,
        interference: Interference | None = None,
    ) -> None:
        self._yielded_this_busy_period = False
        self._fits: FitIndex | None = None
        self._solo: SoloIndex | None = None
        self._interference = interference
        if device is not None:
            self.use_device(device)

    def use_device(self, device: DeviceShape) -> None:
        """Pad for `device` from now on (the composition root calls this once
        the device is open and knows its SMs)."""
        self._fits = FitIndex(device)
        self._solo = SoloIndex(device)

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        if state.rt_active():
            return self._plan_rt(state, now_us)
        self._yielded_this_busy_period = False
        return Plan(launches=self._plan_be(state))

    def _plan_rt(self, state: SchedulerState, now_us: int) -> Plan:
        yield_be = False
        if not self._yielded_this_busy_period and state.inflight(Stream.BE) > 0:
            yield_be = self._yielded_this_busy_period = True
        reset = yield_be and self.drops_be
        task = state.next_rt()
        overtake = task is not None and self._overtakes(state, task)
        return Plan(
            launches=[] if overtake else self._rt_launches(state, task, now_us),
            reset_be=reset,
            preempt_be=reset and self.preempts_be,
            yield_be=yield_be,
            reset_rt=overtake,
        )

    def _rt_launches(
        self, state: SchedulerState, task: Task | None, now_us: int
    ) -> list[Launch]:
        """The first RT task's calls, padded where a BE slice fits; EDF holds
        at task boundaries: a task starts only once no other RT task has
        kernels on the device."""
        if task is None or not state.can_issue(task):
            return []
        if state.inflight(Stream.RT) - task.inflight > 0:
            return []
        n = task.remaining_calls
        if self._fits is not None and state.inflight(Stream.BE) > 0:
            n = self.rt_window_calls - task.inflight
        launches = next_launches(task, n, Stream.RT, Form.PLAIN)
        return self._pad(state, task, launches, now_us)

    def _overtakes(self, state: SchedulerState, task: Task) -> bool:
        """Whether `task` (first by deadline) should take the device from an
        RT task with a later deadline whose calls are queued: EDF across RT
        tasks at kernel boundaries, so a short request is not stuck behind a
        long one. A task already draining is not reset again."""
        if not self.preempts_rt:
            return False
        for other in state.rt_queue:
            if (
                other is not task
                and other.inflight > 0
                and other.task_id not in state.draining
            ):
                return True
        return False

    def _pad(
        self, state: SchedulerState, rt: Task, launches: list[Launch], now_us: int
    ) -> list[Launch]:
        """Give RT calls a BE slice where one fits, splitting the RT run
        around the padded calls. Candidates are the `pad_candidates` best BE
        tasks with nothing in flight (so their calls stay in order), ranked by
        predicted interference, then progress; each pads at most one call."""
        if self._fits is None or rt.costs is None or not launches:
            return launches
        free = itertools.islice(
            (
                be
                for be in state.iter_be_candidates()
                if be.costs is not None and be.inflight == 0
            ),
            self.pad_candidates,
        )
        candidates = [
            (be, be.costs[be.next_call]) for be in self._rank(rt, free, now_us)
        ]
        if not candidates:
            return launches
        (run,) = launches
        pads = pad_calls(rt.costs, run.call_index, run.end_call, candidates, self._fits)
        out: list[Launch] = []
        start = run.call_index
        for call, pad in pads:
            if call > start:
                out.append(replace(run, call_index=start, n_calls=call - start))
            out.append(Launch(rt.task_id, call, Stream.RT, Form.PADDED, pad))
            start = call + 1
        if start < run.end_call:
            out.append(replace(run, call_index=start, n_calls=run.end_call - start))
        return out

    def _rank(self, rt: Task, free: Iterable[Task], now_us: int) -> list[Task]:
        """BE candidates by predicted RT slowdown (unknown pairs last), ties in
        the order they come (most progress first); those whose conservative
        prediction would make the RT task miss its deadline are withheld."""
        if self._interference is None:
            return list(free)
        slack = self._slack(rt, now_us)
        scored = []
        for order, be in enumerate(free):
            predicted = self._interference(rt, be)
            if predicted is None:
                scored.append((math.inf, order, be))
            elif predicted[1] <= slack:
                scored.append((predicted[0], order, be))
        return [be for _, _, be in sorted(scored, key=lambda s: s[:2])]

    def _slack(self, rt: Task, now_us: int) -> float:
        """How much slower than alone the rest of the RT task may run and still
        meet its deadline (inf when nothing is left or nothing is known)."""
        if rt.deadline_us is None or self._solo is None or rt.costs is None:
            return math.inf
        left_us = self._solo.remaining_us(rt.costs, rt.next_call)
        if left_us <= 0:
            return math.inf
        return (rt.deadline_us - now_us) / left_us

    def _plan_be(self, state: SchedulerState) -> list[Launch]:
        return fill_be(state, self.be_form)
