"""Plan and Completion: what the scheduler tells the executor, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Stream(StrEnum):
    """Device queues. RT has priority over BE on the device."""

    RT = "rt"
    BE = "be"


class Form(StrEnum):
    """Which generated entry point runs a call (see the kernel library)."""

    PLAIN = "plain"
    PREEMPTIBLE = "preemptible"
    PADDED = "padded"


@dataclass(frozen=True)
class PadSlice:
    """The BE half of a padded launch: up to `budget_vbs` virtual blocks of one
    BE call, run in CTA slots the RT kernel leaves idle. The BE call comes back
    as its own Completion: OK when its last block ran, else PREEMPTED (its
    counter is kept and it resumes later)."""

    task_id: int
    call_index: int
    budget_vbs: int


@dataclass(frozen=True)
class Launch:
    """Calls `call_index .. call_index + n_calls - 1` of a task, in order, on
    one stream in one form (a run; one call is a run of one). A PADDED launch
    is always one call."""

    task_id: int
    call_index: int
    stream: Stream
    form: Form = Form.PLAIN
    pad: PadSlice | None = None
    """Set on a PADDED RT launch: the BE slice it also runs."""
    n_calls: int = 1

    @property
    def end_call(self) -> int:
        """One past the last call of the run."""
        return self.call_index + self.n_calls


@dataclass
class Plan:
    """One scheduling step.

    `reset_be`: before the launches, drop every BE launch still queued on the
    device's host queue (they come back as DROPPED completions). `preempt_be`
    (with `reset_be`): also raise the preempt flag, so running preemptible BE
    kernels stop at their next virtual block (they come back as PREEMPTED and
    resume from their saved counter when relaunched). A reset without
    `preempt_be` is REEF-N's host-queue reset: running kernels finish.
    `reset_rt`: before the launches, drop the RT launches still in the host
    queue: an RT task with an earlier deadline takes over from the one running
    at its next kernel boundary (the dropped calls come back DROPPED and are
    issued again after it).
    `yield_be`: RT work starts while BE calls are on the device, and BE is to
    give way (by a reset, or as `wait` does, by issuing no more): the executor
    times how long until no BE call is left on the device (the preemption
    latency), whether or not anything was dropped or stopped.
    """

    launches: list[Launch] = field(default_factory=list)
    reset_be: bool = False
    preempt_be: bool = False
    yield_be: bool = False
    reset_rt: bool = False

    def __bool__(self) -> bool:
        return bool(self.launches) or self.reset_be or self.yield_be or self.reset_rt


class CompletionStatus(StrEnum):
    OK = "ok"
    DROPPED = "dropped"
    """Never started: removed from a host queue by a reset."""
    PREEMPTED = "preempted"
    """Started and stopped at a virtual-block boundary by the preempt flag; the
    device keeps the call's counter, so relaunching it resumes, not restarts."""
    FAILED = "failed"


@dataclass(frozen=True)
class Completion:
    """Calls `call_index .. call_index + n_calls - 1` of a task came back with
    `status` (a device may report a run in pieces, or call by call).
    `start_us` is when the first of them started, `end_us` when the last
    ended."""

    task_id: int
    call_index: int
    status: CompletionStatus
    start_us: int = 0
    end_us: int = 0
    error: str = ""
    n_calls: int = 1
