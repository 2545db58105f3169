"""Host queues, launches in flight and their completions for the cuda backend.

Owns the bookkeeping between the executor and the GPU streams, free of driver
calls so it is unit-testable:
- `StreamQueue`: one per Stream. `waiting` is the host queue (ours: a deque the
  GPU has not seen, so `drop_queued` can still take launches back); `inflight`
  holds what was pushed to the GPU stream, in push order, which is completion
  order on one stream. A launch is pushed only while `inflight` is below the
  stream's depth (`rt_gpu_queue_launches`, `be_gpu_queue_launches`).
- `Inflight`: what one pushed launch needs at completion: its events, the clock
  anchor it was timed against, and the counters read back into pinned slots.
- `Anchor` and `to_host_us`: GPU event times in the daemon's monotonic
  microsecond clock. An anchor is one event recorded on an otherwise idle
  stream and synchronized, bracketed by host clock reads t0 (before the record)
  and t1 (after the synchronize returns): the event's GPU time is taken as host
  time (t0 + t1) / 2, within (t1 - t0) / 2. A later event's host time is the
  anchor's plus cuEventElapsedTime(anchor, event). Anchors are renewed about
  once a second (elapsed times are float milliseconds: 1 s keeps them to well
  under a microsecond, and GPU clock drift stays negligible).
- `completions`: Completions of a finished launch from its times and counters
  (PREEMPTED when a preemptible call's counter stopped below its block count).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from reefd.backends.device import DeviceLaunch
from reefd.scheduler.plan import Completion, CompletionStatus, Stream


@dataclass(eq=False)
class Anchor:
    """A GPU event whose host time is known."""

    event: Any
    host_us: int
    error_us: int
    """Half the host-clock bracket around the event: the anchor's uncertainty."""
    refs: int = 0
    """Launches in flight timed against this anchor."""
    retired: bool = False
    """Replaced by a newer anchor; its event is destroyed once `refs` is 0."""


def to_host_us(anchor: Anchor, elapsed_ms: float) -> int:
    """Host time of an event `elapsed_ms` after the anchor event."""
    return anchor.host_us + round(elapsed_ms * 1000.0)


def bracket_us(t0_us: int, t1_us: int) -> tuple[int, int]:
    """(host time, uncertainty) of a GPU event recorded after host time t0 and
    seen complete at t1."""
    return (t0_us + t1_us) // 2, (t1_us - t0_us + 1) // 2


@dataclass(frozen=True)
class Readback:
    """A block counter copied to a pinned slot after a launch."""

    task_id: int
    call_index: int
    slot: int
    n_vb: int


@dataclass(eq=False)
class Inflight:
    """A launch on a GPU stream, until its `done` event completes."""

    launch: DeviceLaunch
    anchor: Anchor
    pushed_us: int
    start: Any | None
    """Event before the kernel; None when the stream was busy at push time (the
    kernel then starts when the previous launch ends, or at push if later)."""
    end: Any
    """Event right after the kernel (its end time)."""
    done: Any
    """Event after the counter read-backs (what completion waits for); `end`
    when nothing is read back."""
    readbacks: tuple[Readback, ...] = ()

    def events(self) -> list[Any]:
        found = [self.start, self.end, self.done]
        unique: list[Any] = []
        for event in found:
            if event is not None and all(event is not u for u in unique):
                unique.append(event)
        return unique


@dataclass(eq=False)
class StreamQueue:
    """The host queue and the GPU queue of one stream."""

    stream: Stream
    depth: int
    """Most launches pushed to the GPU stream and not yet completed."""
    waiting: deque[tuple[DeviceLaunch, Any]] = field(default_factory=deque)
    """Launches the GPU has not seen, with what the engine prepared for them."""
    inflight: deque[Inflight] = field(default_factory=deque)
    last_end_us: int = 0
    """End time of the last launch completed on this stream."""

    def room(self) -> bool:
        return len(self.inflight) < self.depth

    def drop(self) -> list[DeviceLaunch]:
        """Empty the host queue; the launches the GPU never saw, oldest first."""
        dropped = [launch for launch, _ in self.waiting]
        self.waiting.clear()
        return dropped

    def busy(self) -> bool:
        return bool(self.waiting or self.inflight)


def status_of(counter: int, n_vb: int) -> CompletionStatus:
    """OK when every block was claimed (claimed blocks always complete), else
    PREEMPTED: the counter is kept and the next launch resumes there."""
    return CompletionStatus.OK if counter >= n_vb else CompletionStatus.PREEMPTED


def completions(
    record: Inflight,
    start_us: int,
    end_us: int,
    counters: dict[int, int],
) -> list[Completion]:
    """The Completions of a finished launch.

    `counters` maps each readback's slot to the value the GPU copied. The
    launch's own call is OK, or for a preemptible launch OK/PREEMPTED by its
    counter; a padded launch adds the BE call's Completion.
    """
    launch = record.launch
    own = CompletionStatus.OK
    out: list[Completion] = []
    for rb in record.readbacks:
        status = status_of(counters[rb.slot], rb.n_vb)
        if (rb.task_id, rb.call_index) == (launch.task_id, launch.call_index):
            own = status
        else:
            out.append(Completion(rb.task_id, rb.call_index, status, start_us, end_us))
    return [
        Completion(launch.task_id, launch.call_index, own, start_us, end_us),
        *out,
    ]


def failed(launch: DeviceLaunch, error: str, now_us: int) -> list[Completion]:
    """Completions of a launch that failed: its own call FAILED; the BE half of
    a padded launch PREEMPTED (it is not the BE task's fault; its counter is
    kept, so it runs again later, and fails there if the GPU is broken)."""
    out = [
        Completion(
            launch.task_id,
            launch.call_index,
            CompletionStatus.FAILED,
            now_us,
            now_us,
            error,
        )
    ]
    if launch.pad is not None:
        pad = launch.pad
        out.append(
            Completion(
                pad.task_id,
                pad.call_index,
                CompletionStatus.PREEMPTED,
                now_us,
                now_us,
                error,
            )
        )
    return out
