"""The cpu measuring backend: kernel calls through their torch references.

Owns loading a lowered model the way the daemon's cpu backend does
(`CpuDevice.load` and `alloc`, weights shared by content) and timing it with
the same per-call step the daemon's device thread runs (`cpu._execute`), with
`time.monotonic_ns` (CLOCK_MONOTONIC: one clock for every process of the host)
between calls. torch runs with one intra-op thread by default, like the daemon
(docs/architecture.md "cpu backend").

A pair on this backend runs in two worker processes, one per task
(cpu_corun.py), alone and then together: two Python threads in one process
would share one GIL, and a co-run would measure which thread holds it, not how
the tasks compete for cores, caches and memory bandwidth. It is a CPU stand-in
for GPU co-location, labelled backend=cpu, never a GPU figure.

Imports torch and reefd only; never CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from reefd.backends.cpu import CpuDevice, CpuModel, CpuTaskMemory, _execute
from reefd.graph import KernelGraph
from reefd.profiler.environment import environment
from reefd.profiler.records import Environment
from reefd.profiler.runner import Measured, Span, TaskRunner
from reefd.weight_pool import digest

if TYPE_CHECKING:
    from reefd.clients.lower import Lowered
    from reefd.profiler.cpu_corun import Workers


def _raw(t: torch.Tensor) -> bytes:
    """A tensor's bytes in row-major order (any dtype)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@dataclass(frozen=True)
class TaskBytes:
    """A lowered task as the daemon receives it: graph, weights and inputs as
    raw bytes (what a worker process is sent to load the task)."""

    graph: KernelGraph
    weights: dict[str, bytes]
    inputs: tuple[bytes, ...]

    @classmethod
    def of(cls, lowered: Lowered, inputs: Sequence[torch.Tensor]) -> TaskBytes:
        weights = {name: _raw(t) for name, t in lowered.weights.items()}
        return cls(lowered.graph, weights, tuple(_raw(t) for t in inputs))


class CpuBackend:
    """Tasks run on this host's CPU, torch with `threads` intra-op threads."""

    name = "cpu"
    default_arch: str | None = "sm_90"
    corun_method = (
        "cpu processes: one worker process per task ({threads} torch intra-op "
        "thread(s) each), running its torch reference calls back to back, alone "
        "and then beside the other from a shared start; a CPU stand-in for GPU "
        "co-location"
    )

    def __init__(
        self,
        device: CpuDevice,
        threads: int,
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._device = device
        self.threads = threads
        self._note = note
        self.corun_method = self.corun_method.format(threads=threads)
        self._workers: Workers | None = None

    @classmethod
    def open(
        cls, threads: int = 1, note: Callable[[str], None] = lambda _: None
    ) -> CpuBackend:
        """This host's CPU, torch set to `threads` intra-op threads; `note`
        hears what may spoil a pair (threads oversubscribing the CPUs, a worker
        other processes held off them)."""
        torch.set_num_threads(threads)
        return cls(CpuDevice(torch_threads=threads), threads, note)

    def environment(self, resources_arch: str | None) -> Environment:
        return environment("cpu", resources_arch=resources_arch)

    def runner(self, lowered: Lowered, inputs: Sequence[torch.Tensor]) -> CpuRunner:
        return CpuRunner.load(self._device, lowered, inputs)

    def pair_runners(
        self, tasks: Sequence[tuple[Lowered, Sequence[torch.Tensor]]]
    ) -> tuple[TaskRunner, TaskRunner]:
        """Each task loaded in a worker process of its own (started on first use
        and kept until `close`, started again if one died): slot 0 the RT side,
        slot 1 the BE side."""
        from reefd.profiler.cpu_corun import Workers

        if self._workers is not None and not self._workers.alive():
            self._workers.close()
            self._workers = None
        if self._workers is None:
            self._workers = Workers.start(self.threads, self._note)
        workers = self._workers
        rt, be = (workers.runner(i, TaskBytes.of(*t)) for i, t in enumerate(tasks))
        return rt, be

    def start_corun(self) -> None:
        pass

    def corun(
        self,
        runners: tuple[TaskRunner, TaskRunner],
        on_run: Callable[[int, Span], bool],
    ) -> tuple[list[Span], list[Span]]:
        assert self._workers is not None, "corun takes runners from pair_runners"
        return self._workers.corun(runners, on_run)

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        self._device.close()


class CpuRunner:
    """One lowered model loaded on a CpuDevice (not started: we run its calls)."""

    def __init__(self, device: CpuDevice, model: CpuModel, memory: CpuTaskMemory):
        self._device = device
        self._model = model
        self._memory = memory
        self.n_calls = len(memory.calls)

    @classmethod
    def load(
        cls, device: CpuDevice, lowered: Lowered, inputs: Sequence[torch.Tensor]
    ) -> CpuRunner:
        """Load the weights (shared by content), allocate one task's memory."""
        return cls.from_bytes(device, TaskBytes.of(lowered, inputs))

    @classmethod
    def from_bytes(cls, device: CpuDevice, task: TaskBytes) -> CpuRunner:
        digests = {n: digest(b) for n, b in task.weights.items()}
        model = device.load(task.graph, task.weights, digests)
        return cls(device, model, device.alloc(model, list(task.inputs)))

    def _run(self, call_us: list[list[float]] | None = None) -> Span:
        """One whole task; appends each call's duration to `call_us` if given."""
        memory = self._memory
        with torch.no_grad():
            start = before = time.monotonic_ns()
            for index in range(self.n_calls):
                _execute(memory, index)
                after = time.monotonic_ns()
                if call_us is not None:
                    call_us[index].append((after - before) / 1000.0)
                before = after
        return start / 1000.0, before / 1000.0

    def warm_up(self, runs: int) -> None:
        for _ in range(runs):
            self._run()

    def measure(self, repeat: int, on_run: Callable[[], None]) -> Measured:
        call_us: list[list[float]] = [[] for _ in range(self.n_calls)]
        task_us = []
        for _ in range(repeat):
            start, end = self._run(call_us)
            task_us.append(end - start)
            on_run()
        return Measured(tuple(task_us), tuple(tuple(c) for c in call_us))

    def corun(self, keep_going: Callable[[Sequence[Span]], bool]) -> list[Span]:
        spans: list[Span] = []
        while keep_going(spans):
            spans.append(self._run())
        return spans

    def close(self) -> None:
        self._device.free(self._memory)
        self._device.unload(self._model)
