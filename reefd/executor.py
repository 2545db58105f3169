"""Executor: applies a scheduler Plan to a Device and collects Completions.

It owns the mapping from tasks to their model and memory on the device, the set
of launches in flight per stream, and the measurement of preemption latency (the
time from a BE reset until no BE kernel is running any more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reefd.backends.device import Device, DeviceLaunch, PadLaunch
from reefd.scheduler.plan import Completion, CompletionStatus, Plan, Stream


@dataclass
class _Binding:
    model: object
    memory: object


class Executor:
    def __init__(self, device: Device, clock_us: Callable[[], int]) -> None:
        self._device = device
        self._clock_us = clock_us
        self._bindings: dict[int, _Binding] = {}
        self._inflight: dict[Stream, set[tuple[int, int]]] = {s: set() for s in Stream}
        self._reset_at_us: int | None = None
        self.preemption_latencies_us: list[int] = []
        self.launches = 0

    def bind(self, task_id: int, model: object, memory: object) -> None:
        self._bindings[task_id] = _Binding(model, memory)

    def unbind(self, task_id: int) -> object:
        """Forget a released task; returns its memory for the caller to free."""
        return self._bindings.pop(task_id).memory

    def memory(self, task_id: int) -> object:
        return self._bindings[task_id].memory

    def run(self, plan: Plan) -> list[Completion]:
        """Apply a plan; returns the DROPPED completions a reset produced."""
        dropped: list[Completion] = []
        if plan.reset_be:
            dropped = self._reset_be(plan.preempt_be)
        for launch in plan.launches:
            binding = self._bindings[launch.task_id]
            self._inflight[launch.stream].add((launch.task_id, launch.call_index))
            pad = None
            if launch.pad is not None:
                be = self._bindings[launch.pad.task_id]
                pad = PadLaunch(
                    launch.pad.task_id,
                    launch.pad.call_index,
                    launch.pad.budget_vbs,
                    be.model,
                    be.memory,
                )
                key = (launch.pad.task_id, launch.pad.call_index)
                self._inflight[launch.stream].add(key)
            self._device.launch(
                DeviceLaunch(
                    launch.task_id,
                    launch.call_index,
                    launch.stream,
                    launch.form,
                    binding.model,
                    binding.memory,
                    pad,
                )
            )
            self.launches += 1
        return dropped

    def _reset_be(self, preempt: bool) -> list[Completion]:
        """Drop queued BE launches (and raise the preempt flag if `preempt`);
        the preemption latency runs from here until no BE launch is running."""
        now = self._clock_us()
        if preempt:
            self._device.set_preempt(True)
        removed = self._device.drop_queued(Stream.BE)
        for launch in removed:
            self._inflight[Stream.BE].discard((launch.task_id, launch.call_index))
        if self._inflight[Stream.BE]:
            self._reset_at_us = now
        else:
            if preempt:
                self._device.set_preempt(False)
            self.preemption_latencies_us.append(0)
        return [
            Completion(d.task_id, d.call_index, CompletionStatus.DROPPED, now, now)
            for d in removed
        ]

    def poll(self) -> list[Completion]:
        done = self._device.poll()
        be_ends = [self._reset_at_us or 0]
        for c in done:
            key = (c.task_id, c.call_index)
            if key in self._inflight[Stream.BE]:
                be_ends.append(c.end_us)
            for stream in Stream:
                self._inflight[stream].discard(key)
        if self._reset_at_us is not None and not self._inflight[Stream.BE]:
            last_end = max(be_ends)
            self.preemption_latencies_us.append(max(0, last_end - self._reset_at_us))
            self._reset_at_us = None
            self._device.set_preempt(False)
        return done

    def inflight(self, stream: Stream) -> int:
        return len(self._inflight[stream])
