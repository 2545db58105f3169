"""Task: one inference request as the scheduler sees it (a run of kernel calls)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Priority(StrEnum):
    RT = "rt"
    BE = "be"


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PREEMPTED = "preempted"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


@dataclass
class Task:
    """Progress of one request through its model's kernel calls.

    Calls run in order. `next_call` is the first call not yet issued to the
    device, `done_calls` counts completed calls, `inflight` counts issued calls
    not yet completed or dropped. `deadline_us` is arrival + SLO for RT tasks.
    """

    task_id: int
    client_id: int
    model_id: int
    priority: Priority
    n_calls: int
    arrival_us: int
    deadline_us: int | None = None
    state: TaskState = TaskState.QUEUED
    next_call: int = 0
    done_calls: int = 0
    inflight: int = 0
    started_us: int | None = None
    finished_us: int | None = None
    preemptions: int = 0
    error: str = ""
    profile_key: str = ""
    """The model's graph key (reefd.profiler.identity), under which profiles
    and the interference model know it; empty if not computed."""
    costs: tuple[Any, ...] | None = field(default=None, repr=False)
    """Per-call `padding.CallCost` where the device knows them (resources from
    the kernel library, durations from profiles); None disables padding."""

    @property
    def remaining_calls(self) -> int:
        return self.n_calls - self.next_call

    @property
    def progress(self) -> float:
        return self.done_calls / self.n_calls

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL
