"""The cpu measuring backend: kernel calls through their torch references.

Owns loading a lowered model the way the daemon's cpu backend does
(`CpuDevice.load` and `alloc`, weights shared by content) and timing it with
the same per-call step the daemon's device thread runs (`cpu._execute`), with
`time.perf_counter_ns` between calls. torch runs with one intra-op thread by
default, like the daemon (docs/architecture.md "cpu backend").

A co-run on this backend is two Python threads, each running its task's calls
back to back: torch releases the GIL inside each kernel, so the two tasks
compete for cores, caches and memory bandwidth. It is a CPU stand-in for GPU
co-location, labelled backend=cpu, never a GPU figure.

Imports torch and reefd only; never CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from reefd.backends.cpu import CpuDevice, CpuModel, CpuTaskMemory, _execute
from reefd.profiler.environment import environment
from reefd.profiler.records import Environment
from reefd.profiler.runner import Measured, Span
from reefd.weight_pool import digest

if TYPE_CHECKING:
    from reefd.clients.lower import Lowered


def _raw(t: torch.Tensor) -> bytes:
    """A tensor's bytes in row-major order (any dtype)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


class CpuBackend:
    """Tasks run on this host's CPU, torch with `threads` intra-op threads."""

    name = "cpu"
    default_arch: str | None = "sm_90"
    corun_method = (
        "cpu threads: two host threads, each running its task's torch reference "
        "calls back to back ({threads} intra-op thread(s) each); a CPU stand-in "
        "for GPU co-location"
    )

    def __init__(self, device: CpuDevice, threads: int) -> None:
        self._device = device
        self.threads = threads
        self.corun_method = self.corun_method.format(threads=threads)

    @classmethod
    def open(cls, threads: int = 1) -> CpuBackend:
        """This host's CPU, torch set to `threads` intra-op threads."""
        torch.set_num_threads(threads)
        return cls(CpuDevice(torch_threads=threads), threads)

    def environment(self, resources_arch: str | None) -> Environment:
        return environment("cpu", resources_arch=resources_arch)

    def runner(self, lowered: Lowered, inputs: Sequence[torch.Tensor]) -> CpuRunner:
        return CpuRunner.load(self._device, lowered, inputs)

    def start_corun(self) -> None:
        pass

    def close(self) -> None:
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
        weights = {name: _raw(t) for name, t in lowered.weights.items()}
        digests = {n: digest(b) for n, b in weights.items()}
        model = device.load(lowered.graph, weights, digests)
        del weights
        return cls(device, model, device.alloc(model, [_raw(t) for t in inputs]))

    def _run(self, call_us: list[list[float]] | None = None) -> Span:
        """One whole task; appends each call's duration to `call_us` if given."""
        memory = self._memory
        with torch.no_grad():
            start = before = time.perf_counter_ns()
            for index in range(self.n_calls):
                _execute(memory, index)
                after = time.perf_counter_ns()
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

    def corun(self, keep_going: Callable[[int], bool]) -> list[Span]:
        spans: list[Span] = []
        while keep_going(len(spans)):
            spans.append(self._run())
        return spans

    def close(self) -> None:
        self._device.free(self._memory)
        self._device.unload(self._model)
