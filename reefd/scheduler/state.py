"""SchedulerState: the scheduler's queues and in-flight bookkeeping.

Owns every live task by id (live = submitted and not yet released), the RT queue
in deadline order, the per-client BE FIFO queues, the submission (arrival) order
of all tasks, the launches issued and not yet completed (with their stream), and
`be_inflight_cap`. Policies read it through the query helpers; only the
`Scheduler` mutates it. Pure data: it must not import clocks, sockets, threads
or devices.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator

from reefd.scheduler.plan import Launch, Stream
from reefd.scheduler.task import Priority, Task


def rt_key(task: Task) -> tuple[int, int, int]:
    """Earliest deadline first; ties by arrival, then id."""
    assert task.deadline_us is not None
    return (task.deadline_us, task.arrival_us, task.task_id)


def be_key(task: Task) -> tuple[float, int, int]:
    """Most progress first; ties by earliest arrival, then id."""
    return (-task.progress, task.arrival_us, task.task_id)


class SchedulerState:
    """Queues of live tasks. Terminal tasks leave the queues at once but stay in
    `tasks` (and in the in-flight counts) until their last launch comes back."""

    def __init__(self, be_inflight_cap: int) -> None:
        if be_inflight_cap < 1:
            raise ValueError(f"be_inflight_cap must be >= 1, got {be_inflight_cap}")
        self.be_inflight_cap = be_inflight_cap
        self.tasks: dict[int, Task] = {}
        self.arrival: dict[int, Task] = {}  # submission order, insertion-ordered
        self.rt_queue: list[Task] = []  # non-terminal RT tasks, sorted by rt_key
        self.be_queues: dict[int, deque[Task]] = {}  # client id -> non-terminal BE
        self.outstanding: dict[int, dict[int, Stream]] = {}  # task -> call -> stream
        # Tasks hit by a reset or a drop that still have launches out: issuing
        # more of their calls before every launch is back could reorder them.
        self.draining: set[int] = set()
        self._inflight: dict[Stream, int] = {s: 0 for s in Stream}

    # ---- queries (what policies use) -------------------------------------

    def inflight(self, stream: Stream) -> int:
        """Launches on `stream` issued and not yet completed or dropped."""
        return self._inflight[stream]

    def inflight_total(self) -> int:
        return sum(self._inflight.values())

    def rt_active(self) -> bool:
        """Whether any RT task has calls still to issue or in flight."""
        return bool(self.rt_queue)

    def next_rt(self) -> Task | None:
        """The earliest-deadline RT task that has not ended."""
        return self.rt_queue[0] if self.rt_queue else None

    def can_issue(self, task: Task) -> bool:
        """Whether `task.next_call` may be launched now.

        False for terminal tasks, tasks with no calls left to issue, and tasks
        hit by a reset or a drop whose launches have not all come back yet
        (issuing then would run calls out of order).
        """
        if task.terminal or task.remaining_calls <= 0:
            return False
        if task.task_id in self.draining:
            return False
        calls = self.outstanding.get(task.task_id)
        return not calls or max(calls) < task.next_call

    def be_candidates(self) -> list[Task]:
        """BE tasks that may be issued now, best first (`be_key`).

        One per client: the first task in the client's FIFO with calls left to
        issue, if it can issue; later tasks of that client wait their turn.
        """
        heads = []
        for queue in self.be_queues.values():
            head = next((t for t in queue if t.remaining_calls > 0), None)
            if head is not None and self.can_issue(head):
                heads.append(head)
        return sorted(heads, key=be_key)

    def in_arrival_order(self) -> Iterator[Task]:
        """Live, non-terminal tasks in the order they were submitted."""
        return (t for t in self.arrival.values() if not t.terminal)

    # ---- mutation (the Scheduler only) -----------------------------------

    def add(self, task: Task) -> None:
        self.tasks[task.task_id] = task
        self.arrival[task.task_id] = task
        if task.priority is Priority.RT:
            bisect.insort(self.rt_queue, task, key=rt_key)
        else:
            self.be_queues.setdefault(task.client_id, deque()).append(task)

    def dequeue(self, task: Task) -> None:
        """Take a task that has ended out of the RT/BE queues (idempotent)."""
        if task.priority is Priority.RT:
            _drop(self.rt_queue, task)
            return
        queue = self.be_queues.get(task.client_id)
        if queue is not None:
            _drop(queue, task)
            if not queue:
                del self.be_queues[task.client_id]

    def remove(self, task: Task) -> None:
        """Forget a released task entirely."""
        assert task.task_id not in self.outstanding, "released with launches out"
        self.dequeue(task)
        del self.tasks[task.task_id]
        del self.arrival[task.task_id]

    def note_reset(self) -> list[Task]:
        """A reset drops BE launches: mark tasks with launches on Stream.BE as
        draining; return them."""
        hit = [
            self.tasks[tid]
            for tid, calls in self.outstanding.items()
            if Stream.BE in calls.values()
        ]
        self.draining.update(t.task_id for t in hit)
        return hit

    def note_launch(self, launch: Launch) -> None:
        calls = self.outstanding.setdefault(launch.task_id, {})
        assert launch.call_index not in calls, f"{launch} already in flight"
        calls[launch.call_index] = launch.stream
        self._inflight[launch.stream] += 1

    def note_returned(self, task_id: int, call_index: int) -> bool:
        """Record that a launch came back; False if it was not in flight.
        The task stops draining once its last launch is back."""
        calls = self.outstanding.get(task_id)
        if calls is None or call_index not in calls:
            return False
        stream = calls.pop(call_index)
        if not calls:
            del self.outstanding[task_id]
            self.draining.discard(task_id)
        self._inflight[stream] -= 1
        return True


def _drop(queue: list[Task] | deque[Task], task: Task) -> None:
    """Remove `task` by identity (Task's dataclass equality compares fields)."""
    for i, queued in enumerate(queue):
        if queued is task:
            del queue[i]
            return
