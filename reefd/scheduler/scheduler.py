"""Scheduler: owns the SchedulerState and the task bookkeeping around a Policy.

`submit` queues tasks, `plan` asks the policy and applies its Plan to the tasks
(then checks invariants), `on_complete` folds device completions back in and
returns the tasks that are released (ended with nothing left on the device, so
the engine may free their memory), `cancel`/`cancel_client` end tasks early.
`now_us` is always an argument: this module must not import clocks, sockets,
threads or devices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from reefd.scheduler.plan import (
    Completion,
    CompletionStatus,
    Form,
    Launch,
    Plan,
    Stream,
)
from reefd.scheduler.policy import Policy
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Priority, Task, TaskState


class CancelResult(NamedTuple):
    """What `cancel` did to one task.

    `released`: True when the task had nothing in flight and was removed now
    (free its memory now); False when launches are still on the device, in which
    case `on_complete` returns the task once the last of them comes back.
    """

    task: Task
    released: bool


def _invariant(ok: bool, message: str, *args: object) -> None:
    """An assert that survives `python -O`. The message is a `str.format`
    template filled with `args` only when it fails (formatting one on every
    plan cost more than planning)."""
    if not ok:
        raise AssertionError(message.format(*args))


class Scheduler:
    def __init__(self, policy: Policy, be_inflight_cap: int) -> None:
        self.policy = policy
        self.state = SchedulerState(be_inflight_cap)

    # ---- queries ---------------------------------------------------------

    @property
    def be_inflight_cap(self) -> int:
        return self.state.be_inflight_cap

    @property
    def idle(self) -> bool:
        """No live tasks (nothing queued, running or awaiting release)."""
        return not self.state.tasks

    def task(self, task_id: int) -> Task | None:
        return self.state.tasks.get(task_id)

    def depths(self) -> dict:
        """Queue depths for a status page."""
        s = self.state
        return {
            "live": len(s.tasks),
            "rt_queued": len(s.rt_queue),
            "be_queued": {client: len(q) for client, q in s.be_queues.items()},
            "inflight": {stream.value: s.inflight(stream) for stream in Stream},
        }

    # ---- submit ----------------------------------------------------------

    def submit(self, task: Task, now_us: int) -> None:
        """Queue a new task; raise ValueError if it is not a fresh, valid one."""
        if task.task_id in self.state.tasks:
            raise ValueError(f"duplicate task id {task.task_id}")
        if task.state is not TaskState.QUEUED:
            raise ValueError(f"task {task.task_id} is {task.state}, not queued")
        if task.next_call != 0 or task.done_calls != 0 or task.inflight != 0:
            raise ValueError(
                f"task {task.task_id} already has progress: next_call="
                f"{task.next_call} done_calls={task.done_calls} "
                f"inflight={task.inflight}"
            )
        if task.n_calls < 1:
            raise ValueError(f"task {task.task_id} has n_calls={task.n_calls} < 1")
        if task.priority is Priority.RT and task.deadline_us is None:
            raise ValueError(f"RT task {task.task_id} needs a deadline_us")
        self.state.add(task)

    # ---- plan ------------------------------------------------------------

    def plan(self, now_us: int) -> Plan:
        """Ask the policy for a Plan, apply it to the tasks, check invariants."""
        plan = self.policy.plan(self.state, now_us)
        if plan.reset_be:
            self._on_reset()
        if plan.reset_rt:
            self.state.note_reset(Stream.RT)
        for launch in plan.launches:
            task = self.state.tasks.get(launch.task_id)
            _invariant(task is not None, "{} for an unknown task", launch)
            assert task is not None
            _invariant(not task.terminal, "{} for a {} task", launch, task.state)
            _invariant(
                launch.call_index == task.next_call
                and launch.n_calls >= 1
                and launch.end_call <= task.n_calls,
                "{} out of order: next_call={} n_calls={}",
                launch,
                task.next_call,
                task.n_calls,
            )
            _invariant(
                launch.pad is None or launch.n_calls == 1,
                "{}: a padded launch is one call",
                launch,
            )
            _invariant(self.state.can_issue(task), "{} while draining", launch)
            self._issue(task, launch, now_us)
            if launch.pad is not None:
                self._issue_pad(launch, now_us)
        self._check_invariants(plan)
        return plan

    def _issue(self, task: Task, launch: Launch, now_us: int) -> None:
        self.state.note_launch(launch)
        task.next_call += launch.n_calls
        task.inflight += launch.n_calls
        task.state = TaskState.RUNNING
        if task.started_us is None:
            task.started_us = now_us
        self.state.touch(task)

    def _issue_pad(self, launch: Launch, now_us: int) -> None:
        """The BE call a padded RT launch carries is in flight on that launch's
        stream until its own completion comes back."""
        pad = launch.pad
        assert pad is not None
        be = self.state.tasks.get(pad.task_id)
        _invariant(be is not None, "{} pads an unknown task", launch)
        assert be is not None
        _invariant(
            launch.form is Form.PADDED and be.priority is Priority.BE,
            "{}: only a PADDED launch carries a BE slice",
            launch,
        )
        _invariant(
            pad.call_index == be.next_call and self.state.can_issue(be),
            "{}: BE call {} out of order (next_call={})",
            launch,
            pad.call_index,
            be.next_call,
        )
        _invariant(pad.budget_vbs >= 1, "{}: empty BE budget", launch)
        slice_launch = Launch(pad.task_id, pad.call_index, launch.stream, Form.PADDED)
        self._issue(be, slice_launch, now_us)

    def _on_reset(self) -> None:
        for task in self.state.note_reset():
            if task.priority is Priority.BE:
                task.preemptions += 1

    def _check_invariants(self, plan: Plan) -> None:
        """Check the tasks this plan launched and the stream counts (every
        task's counts only change through a plan or a completion; checking
        all live tasks on every plan cost more than planning)."""
        s = self.state
        touched = {launch.task_id for launch in plan.launches}
        touched.update(x.pad.task_id for x in plan.launches if x.pad is not None)
        for task_id in touched:
            task = s.tasks[task_id]
            outstanding = s.outstanding.get(task_id)
            _invariant(task.next_call <= task.n_calls, "{} past n_calls", task)
            _invariant(
                task.inflight == (outstanding.count if outstanding else 0),
                "{} inflight disagrees with outstanding launches",
                task,
            )
        for stream in Stream:
            _invariant(s.inflight(stream) >= 0, "negative inflight on {}", stream)
        be_launched = any(launch.stream is Stream.BE for launch in plan.launches)
        if self.policy.caps_be_inflight and be_launched:
            _invariant(
                s.inflight(Stream.BE) <= s.be_inflight_cap,
                "{}: {} BE calls in flight > cap {}",
                self.policy.name,
                s.inflight(Stream.BE),
                s.be_inflight_cap,
            )

    # ---- completions -----------------------------------------------------

    def on_complete(self, completions: Iterable[Completion], now_us: int) -> list[Task]:
        """Fold completions in; return the tasks released by them (in order).

        Completions for unknown tasks, or for launches not in flight, are
        ignored.
        """
        touched: dict[int, Task] = {}
        for c in completions:
            task = self.state.tasks.get(c.task_id)
            if task is None:
                continue
            n = self.state.note_returned(c.task_id, c.call_index, c.n_calls)
            if n == 0:
                continue
            task.inflight -= n
            _invariant(task.inflight >= 0, "{} negative inflight", task)
            touched[task.task_id] = task
            if c.status is CompletionStatus.OK:
                self._on_ok(task, n, now_us)
            elif c.status in (CompletionStatus.DROPPED, CompletionStatus.PREEMPTED):
                self._on_dropped(task, c.call_index)
            else:
                self._on_failed(task, c, now_us)
        for task in touched.values():
            self.state.touch(task)
        return self._release([t for t in touched.values() if t.inflight == 0])

    def _on_ok(self, task: Task, n_calls: int, now_us: int) -> None:
        task.done_calls += n_calls
        if task.done_calls == task.n_calls and not task.terminal:
            self._end(task, TaskState.DONE, now_us)

    def _on_dropped(self, task: Task, call_index: int) -> None:
        task.next_call = min(task.next_call, call_index)
        if task.inflight > 0:
            self.state.draining.add(task.task_id)
        elif not task.terminal:
            task.state = TaskState.PREEMPTED

    def _on_failed(self, task: Task, c: Completion, now_us: int) -> None:
        if task.terminal:
            return
        task.error = c.error or f"call {c.call_index} failed"
        self._end(task, TaskState.FAILED, now_us)

    def _end(self, task: Task, state: TaskState, now_us: int) -> None:
        task.state = state
        task.finished_us = now_us
        self.state.dequeue(task)

    def _release(self, tasks: Iterable[Task]) -> list[Task]:
        released = [t for t in tasks if t.terminal and t.inflight == 0]
        for task in released:
            self.state.remove(task)
        return released

    # ---- cancel ----------------------------------------------------------

    def cancel(self, task_id: int, now_us: int) -> CancelResult | None:
        """Cancel a live task; None if the id is unknown or already released.

        A task that already ended (e.g. FAILED with launches still out) keeps
        its state; it is released like any other once nothing is in flight.
        """
        task = self.state.tasks.get(task_id)
        if task is None:
            return None
        if not task.terminal:
            self._end(task, TaskState.CANCELLED, now_us)
        released = bool(self._release([task]))
        return CancelResult(task, released)

    def cancel_client(self, client_id: int, now_us: int) -> list[CancelResult]:
        """Cancel every live task of a client, in arrival order."""
        ids = [
            t.task_id for t in self.state.arrival.values() if t.client_id == client_id
        ]
        results = (self.cancel(task_id, now_us) for task_id in ids)
        return [r for r in results if r is not None]
