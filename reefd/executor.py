"""Executor: applies a scheduler Plan to a Device and collects Completions.

It owns the mapping from tasks to their model and memory on the device, the
calls in flight per task and stream (runs of calls go to the device whole where
it takes runs, call by call where it does not), and the measurement of
preemption latency: from a plan that makes BE give way (a reset, or `wait`'s
"issue no more") until no BE call is left on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reefd.backends.device import Device, DeviceLaunch, PadLaunch
from reefd.scheduler.plan import Completion, CompletionStatus, Launch, Plan, Stream
from reefd.scheduler.runs import InFlight


@dataclass
class _Binding:
    model: object
    memory: object


class Executor:
    def __init__(self, device: Device, clock_us: Callable[[], int]) -> None:
        self._device = device
        self._clock_us = clock_us
        self._takes_runs = device.takes_runs
        self._bindings: dict[int, _Binding] = {}
        self._flight = InFlight()  # calls on the device
        self._reset_at_us: int | None = None
        self._flag_up = False
        self.preemption_latencies_us: list[int] = []
        self.launches = 0
        """Launches handed to the device (a run counts once where the device
        takes runs, once per call where it does not)."""
        self.padded_launches = 0
        """Launches that carried a BE slice (dynamic kernel padding)."""

    def bind(self, task_id: int, model: object, memory: object) -> None:
        self._bindings[task_id] = _Binding(model, memory)

    def unbind(self, task_id: int) -> object:
        """Forget a released task; returns its memory for the caller to free."""
        return self._bindings.pop(task_id).memory

    def memory(self, task_id: int) -> object:
        return self._bindings[task_id].memory

    def run(self, plan: Plan) -> list[Completion]:
        """Apply a plan; returns the DROPPED completions a reset produced.

        A run of calls goes to the device as one launch if it takes runs
        (`Device.takes_runs`), else as one launch per call."""
        dropped: list[Completion] = []
        if plan.reset_rt:
            dropped += self._drop(Stream.RT)
        if plan.reset_be:
            dropped += self._reset_be(plan.preempt_be)
        if plan.yield_be or plan.reset_be:
            self._time_yield()
        for launch in plan.launches:
            self._flight.add(
                launch.task_id, launch.call_index, launch.n_calls, launch.stream
            )
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
                self._flight.add(
                    launch.pad.task_id, launch.pad.call_index, 1, launch.stream
                )
                self.padded_launches += 1
            self._launch(launch, pad)
        return dropped

    def _launch(self, launch: Launch, pad: PadLaunch | None) -> None:
        binding = self._bindings[launch.task_id]
        if self._takes_runs or launch.n_calls == 1:
            pieces = [(launch.call_index, launch.n_calls)]
        else:
            pieces = [(i, 1) for i in range(launch.call_index, launch.end_call)]
        for first, n_calls in pieces:
            self._device.launch(
                DeviceLaunch(
                    launch.task_id,
                    first,
                    launch.stream,
                    launch.form,
                    binding.model,
                    binding.memory,
                    pad,
                    n_calls,
                )
            )
        self.launches += len(pieces)

    def _time_yield(self) -> None:
        """BE is to give way: the preemption latency runs from now until no BE
        call is left on the device (0 if none is now)."""
        if self._reset_at_us is not None:
            return  # already timing this one
        if self._flight.calls(Stream.BE):
            self._reset_at_us = self._clock_us()
            return
        self._lower_flag()
        self.preemption_latencies_us.append(0)

    def _lower_flag(self) -> None:
        if self._flag_up:
            self._device.set_preempt(False)
            self._flag_up = False

    def _reset_be(self, preempt: bool) -> list[Completion]:
        """Drop queued BE launches and raise the preempt flag if `preempt`."""
        if preempt:
            self._device.set_preempt(True)
            self._flag_up = True
        return self._drop(Stream.BE)

    def _drop(self, stream: Stream) -> list[Completion]:
        """Drop what the stream's host queue holds; DROPPED completions for
        it, the BE slices of dropped padded launches included."""
        now = self._clock_us()
        calls = []
        for launch in self._device.drop_queued(stream):
            calls.append((launch.task_id, launch.call_index, launch.n_calls))
            if launch.pad is not None:
                calls.append((launch.pad.task_id, launch.pad.call_index, 1))
        for task_id, first, n_calls in calls:
            self._flight.remove(task_id, first, n_calls)
        return [
            Completion(task_id, first, CompletionStatus.DROPPED, now, now, "", n)
            for task_id, first, n in calls
        ]

    def poll(self) -> list[Completion]:
        done = self._device.poll()
        be_ends = [self._reset_at_us or 0]
        for c in done:
            _, stream = self._flight.remove(c.task_id, c.call_index, c.n_calls)
            if stream is Stream.BE:
                be_ends.append(c.end_us)
        if self._reset_at_us is not None and not self._flight.calls(Stream.BE):
            last_end = max(be_ends)
            self.preemption_latencies_us.append(max(0, last_end - self._reset_at_us))
            self._reset_at_us = None
            self._lower_flag()
        return done

    def inflight(self, stream: Stream) -> int:
        """Calls on `stream` handed to the device and not yet back."""
        return self._flight.calls(stream)
