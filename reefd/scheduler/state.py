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
from reefd.scheduler.runs import InFlight
from reefd.scheduler.task import Priority, Task

BeEntry = tuple[float, int, int]
"""A BE candidate in the ranking: `be_key` of the task (its id last)."""


def rt_key(task: Task) -> tuple[int, int, int]:
    """Earliest deadline first; ties by arrival, then id."""
    assert task.deadline_us is not None
    return (task.deadline_us, task.arrival_us, task.task_id)


def be_key(task: Task) -> tuple[float, int, int]:
    """Most progress first; ties by earliest arrival, then id."""
    return (-task.progress, task.arrival_us, task.task_id)


class SchedulerState:
    """Queues of live tasks. Terminal tasks leave the queues at once but stay in
    `tasks` (and in the in-flight counts) until their last launch comes back.

    BE candidates (each client's first task with calls left to issue) are kept
    in `be_key` order as they change, so a plan reads the best few without
    scanning every client: the Scheduler calls `touch` after it changes a
    task's progress."""

    def __init__(self, be_inflight_cap: int) -> None:
        if be_inflight_cap < 1:
            raise ValueError(f"be_inflight_cap must be >= 1, got {be_inflight_cap}")
        self.be_inflight_cap = be_inflight_cap
        self.tasks: dict[int, Task] = {}
        self.arrival: dict[int, Task] = {}  # submission order, insertion-ordered
        self.rt_queue: list[Task] = []  # non-terminal RT tasks, sorted by rt_key
        self.be_queues: dict[int, deque[Task]] = {}  # client id -> non-terminal BE
        self._flight = InFlight()
        self.outstanding = self._flight.by_task  # task id -> calls in flight
        # Tasks hit by a reset or a drop that still have launches out: issuing
        # more of their calls before every launch is back could reorder them.
        self.draining: set[int] = set()
        self._be_heads: dict[int, BeEntry] = {}  # client id -> its candidate
        self._be_order: list[BeEntry] = []  # every client's candidate, be_key order

    # ---- queries (what policies use) -------------------------------------

    def inflight(self, stream: Stream) -> int:
        """Calls on `stream` issued and not yet completed or dropped."""
        return self._flight.calls(stream)

    def inflight_total(self) -> int:
        return self._flight.total()

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
        return not calls or calls.end <= task.next_call

    def iter_be_candidates(self) -> Iterator[Task]:
        """BE tasks that may be issued now, best first (`be_key`).

        One per client: the first task in the client's FIFO with calls left to
        issue, if it can issue; later tasks of that client wait their turn.
        Lazy: a policy that needs the best few reads only those.
        """
        for entry in self._be_order:
            task = self.tasks[entry[-1]]
            if self.can_issue(task):
                yield task

    def be_candidates(self) -> list[Task]:
        """Every BE candidate, best first (see `iter_be_candidates`)."""
        return list(self.iter_be_candidates())

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
            self._refresh_be(task.client_id)

    def touch(self, task: Task) -> None:
        """The task's progress or next call changed: re-rank its client's BE
        candidate (nothing to do for RT tasks)."""
        if task.priority is Priority.BE:
            self._refresh_be(task.client_id)

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
        self._refresh_be(task.client_id)

    def remove(self, task: Task) -> None:
        """Forget a released task entirely."""
        assert task.task_id not in self.outstanding, "released with launches out"
        self.dequeue(task)
        del self.tasks[task.task_id]
        del self.arrival[task.task_id]

    def note_reset(self, stream: Stream = Stream.BE) -> list[Task]:
        """A reset drops the launches queued on `stream`: mark tasks with
        launches there as draining; return them."""
        hit = [
            self.tasks[tid]
            for tid, calls in self.outstanding.items()
            if stream in calls.streams()
        ]
        self.draining.update(t.task_id for t in hit)
        return hit

    def note_launch(self, launch: Launch) -> None:
        self._flight.add(
            launch.task_id, launch.call_index, launch.n_calls, launch.stream
        )

    def note_returned(self, task_id: int, call_index: int, n_calls: int = 1) -> int:
        """Record that calls came back; returns how many of them were in
        flight (0: none). The task stops draining once its last call is back."""
        returned, _ = self._flight.remove(task_id, call_index, n_calls)
        if task_id not in self.outstanding:
            self.draining.discard(task_id)
        return returned

    def _refresh_be(self, client_id: int) -> None:
        queue = self.be_queues.get(client_id, ())
        head = next((t for t in queue if t.remaining_calls > 0), None)
        entry = None if head is None else be_key(head)
        old = self._be_heads.get(client_id)
        if old == entry:
            return
        if old is not None:
            del self._be_order[bisect.bisect_left(self._be_order, old)]
            del self._be_heads[client_id]
        if entry is not None:
            bisect.insort(self._be_order, entry)
            self._be_heads[client_id] = entry


def _drop(queue: list[Task] | deque[Task], task: Task) -> None:
    """Remove `task` by identity (Task's dataclass equality compares fields)."""
    for i, queued in enumerate(queue):
        if queued is task:
            del queue[i]
            return
