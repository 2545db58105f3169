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
from collections.abc import Callable
from dataclasses import replace

from reefd.scheduler.padding import DeviceShape, FitIndex, pad_calls
from reefd.scheduler.plan import Form, Launch, Plan, Stream
from reefd.scheduler.policy import Policy, next_launches
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Task

Interference = Callable[[Task, Task], float]
"""Predicted slowdown of an RT task (first) beside a BE task (second)."""


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

    def __init__(
        self,
        device: DeviceShape | None = None,
        interference: Interference | None = None,
    ) -> None:
        self._reset_this_busy_period = False
        self._fits = None if device is None else FitIndex(device)
        self._interference = interference or (lambda rt, be: 0.0)

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        if state.rt_active():
            return self._plan_rt(state)
        self._reset_this_busy_period = False
        return Plan(launches=self._plan_be(state))

    def _plan_rt(self, state: SchedulerState) -> Plan:
        reset = False
        if (
            self.drops_be
            and not self._reset_this_busy_period
            and state.inflight(Stream.BE) > 0
        ):
            reset = self._reset_this_busy_period = True
        task = state.next_rt()
        launches: list[Launch] = []
        # EDF holds at task boundaries: start a task only once no other RT task
        # has kernels on the device.
        others_inflight = state.inflight(Stream.RT) - task.inflight if task else 0
        if task is not None and others_inflight == 0 and state.can_issue(task):
            launches = next_launches(task, task.remaining_calls, Stream.RT, Form.PLAIN)
            launches = self._pad(state, task, launches)
        return Plan(
            launches=launches, reset_be=reset, preempt_be=reset and self.preempts_be
        )

    def _pad(
        self, state: SchedulerState, rt: Task, launches: list[Launch]
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
        ranked = sorted(
            enumerate(free), key=lambda c: (self._interference(rt, c[1]), c[0])
        )
        candidates = [(be, be.costs[be.next_call]) for _, be in ranked]
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

    def _plan_be(self, state: SchedulerState) -> list[Launch]:
        room = state.be_inflight_cap - state.inflight(Stream.BE)
        launches: list[Launch] = []
        for task in state.iter_be_candidates():
            if room <= 0:
                break
            batch = next_launches(task, room, Stream.BE, self.be_form)
            launches += batch
            room -= sum(launch.n_calls for launch in batch)
        return launches
