"""Policy: the one interface every scheduling policy implements.

A policy looks at the `SchedulerState` and returns a `Plan`; the `Scheduler`
applies it. Policies never mutate tasks or the state; they may keep a small memo
of their own (e.g. "already reset for this RT busy period"). Like the rest of
the scheduler they must not import clocks, sockets, threads or devices.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from reefd.scheduler.plan import Form, Launch, Plan, Stream
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Task


class Policy(ABC):
    name: str = ""
    caps_be_inflight: bool = False
    """Whether the policy promises at most `be_inflight_cap` launches in flight
    on `Stream.BE` after every plan (the Scheduler asserts it)."""

    @abstractmethod
    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        """Decide the next launches; must not mutate `state` or its tasks."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def fill_be(state: SchedulerState, form: Form) -> list[Launch]:
    """Runs of the best BE candidates' next calls, in `form` on the BE
    stream, until `be_inflight_cap` calls are in flight there."""
    room = state.be_inflight_cap - state.inflight(Stream.BE)
    launches: list[Launch] = []
    for task in state.iter_be_candidates():
        if room <= 0:
            break
        batch = next_launches(task, room, Stream.BE, form)
        launches += batch
        room -= sum(launch.n_calls for launch in batch)
    return launches


def next_launches(task: Task, n: int, stream: Stream, form: Form) -> list[Launch]:
    """The next `n` calls of `task` (at most what it has left) as one run;
    empty when there are none."""
    count = min(task.remaining_calls, max(n, 0))
    if count <= 0:
        return []
    return [Launch(task.task_id, task.next_call, stream, form, n_calls=count)]
