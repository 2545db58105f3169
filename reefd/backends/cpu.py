"""The cpu backend: runs each kernel call through its torch reference on the CPU.

One worker thread is the "device": it takes launches from the RT host queue first,
then the BE queue, one kernel at a time. Results are real tensors, equal to the
torch model's. Preemption happens at kernel boundaries: `drop_queued` empties a
host queue, and a running kernel always completes (the preempt flag is recorded
but a torch reference cannot stop mid-way).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from reefd.backends.device import Device, DeviceLaunch
from reefd.errors import BackendError
from reefd.graph import Buffer, KernelGraph, Role
from reefd.kernels import catalog
from reefd.kernels.spec import TORCH_DTYPE, KernelSpec
from reefd.scheduler.plan import Completion, CompletionStatus, Stream
from reefd.weight_pool import WeightKey, WeightPool


def _weight_tensor(buf: Buffer, data: Any) -> torch.Tensor:
    tensor = torch.frombuffer(bytearray(data), dtype=TORCH_DTYPE[buf.dtype])
    if tensor.numel() != buf.numel:
        raise BackendError(
            f"weight {buf.name!r}: {tensor.numel()} elements, want {buf.numel}"
        )
    return tensor


def now_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass(frozen=True)
class _PreparedCall:
    spec: KernelSpec
    params: dict[str, Any]
    views: tuple[
        tuple[str, str, int, tuple[int, ...]], ...
    ]  # operand, buffer, numel, shape


@dataclass
class CpuModel:
    graph: KernelGraph
    weights: dict[str, torch.Tensor]
    calls: list[_PreparedCall]
    keys: list[WeightKey]
    variants: dict[int, tuple[KernelGraph, list[_PreparedCall]]] = field(
        default_factory=dict
    )
    """Prepared calls of the graph at other batch sizes, by id(graph) (the graph
    is kept beside them, so the id stays valid)."""

    def calls_for(self, graph: KernelGraph) -> list[_PreparedCall]:
        if graph is self.graph:
            return self.calls
        found = self.variants.get(id(graph))
        if found is None or found[0] is not graph:
            found = (graph, [_prepare(c) for c in graph.calls])
            self.variants[id(graph)] = found
        return found[1]


@dataclass
class CpuTaskMemory:
    model: CpuModel
    flats: dict[str, torch.Tensor]
    graph: KernelGraph
    calls: list[_PreparedCall]


class CpuDevice(Device):
    name = "cpu"

    def __init__(self, torch_threads: int = 1) -> None:
        self._torch_threads = torch_threads
        self._queues: dict[Stream, deque[DeviceLaunch]] = {s: deque() for s in Stream}
        self._cond = threading.Condition()
        self._done: list[Completion] = []
        self._running: DeviceLaunch | None = None
        self._preempt = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._waker: Callable[[], None] = lambda: None
        self._pool: WeightPool[torch.Tensor] = WeightPool()

    def describe(self) -> str:
        return (
            f"cpu (torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads)"
        )

    def start(self, waker: Callable[[], None]) -> None:
        torch.set_num_threads(self._torch_threads)
        self._waker = waker
        self._thread = threading.Thread(
            target=self._run, name="reefd-cpu-device", daemon=True
        )
        self._thread.start()

    # memory ---------------------------------------------------------------
    def load(
        self,
        graph: KernelGraph,
        weights: Mapping[str, Any],
        digests: Mapping[str, str],
        compiled: Any = None,
    ) -> CpuModel:
        flats: dict[str, torch.Tensor] = {}
        keys: list[WeightKey] = []
        try:
            for buf in graph.weights:
                key = (digests[buf.name], buf.dtype, buf.nbytes)
                flats[buf.name] = self._pool.acquire(
                    key, lambda b=buf: _weight_tensor(b, weights[b.name])
                )
                keys.append(key)
        except BaseException:
            for key in keys:
                self._pool.release(key)
            raise
        return CpuModel(graph, flats, [_prepare(c) for c in graph.calls], keys)

    def unload(self, model: Any) -> None:
        model.weights.clear()
        for key in model.keys:
            self._pool.release(key)
        model.keys.clear()

    def weight_stats(self) -> dict[str, int]:
        return self._pool.stats()

    def alloc(
        self, model: CpuModel, inputs: list[Any], graph: KernelGraph | None = None
    ) -> CpuTaskMemory:
        flats = dict(model.weights)
        graph = graph or model.graph
        for buf, data in zip(graph.inputs, inputs, strict=True):
            flats[buf.name] = torch.frombuffer(
                bytearray(data), dtype=TORCH_DTYPE[buf.dtype]
            )
        for buf in graph.buffers:
            if buf.role in (Role.OUTPUT, Role.SCRATCH):
                flats[buf.name] = torch.empty(buf.numel, dtype=TORCH_DTYPE[buf.dtype])
        return CpuTaskMemory(model, flats, graph, model.calls_for(graph))

    def outputs(self, memory: CpuTaskMemory) -> list[Any]:
        return [memory.flats[b.name].numpy() for b in memory.graph.outputs]

    def free(self, memory: CpuTaskMemory) -> None:
        memory.flats.clear()

    # launches ---------------------------------------------------------------
    def launch(self, launch: DeviceLaunch) -> None:
        with self._cond:
            self._queues[launch.stream].append(launch)
            self._cond.notify()

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        with self._cond:
            dropped = list(self._queues[stream])
            self._queues[stream].clear()
        return dropped

    def set_preempt(self, flag: bool) -> None:
        self._preempt = flag

    def poll(self) -> list[Completion]:
        with self._cond:
            done, self._done = self._done, []
        return done

    def busy(self) -> bool:
        with self._cond:
            return self._running is not None or any(self._queues.values())

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # the worker -------------------------------------------------------------
    def _next(self) -> DeviceLaunch | None:
        with self._cond:
            while not self._closing:
                for stream in (Stream.RT, Stream.BE):
                    if self._queues[stream]:
                        self._running = self._queues[stream].popleft()
                        return self._running
                self._cond.wait()
            return None

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while (launch := self._next()) is not None:
            done = [_run_one(launch.task_id, launch.call_index, launch.memory)]
            if launch.pad is not None:
                # A torch reference cannot run a slice of a call: the BE call of
                # a padded launch runs whole, after the RT call.
                pad = launch.pad
                done.append(_run_one(pad.task_id, pad.call_index, pad.memory))
            with self._cond:
                self._running = None
                self._done.extend(done)
            self._waker()


def _prepare(call: Any) -> _PreparedCall:
    spec = catalog.get(call.kernel)
    params = spec.with_defaults(call.params)
    shapes = spec.shapes(params)
    views = tuple(
        (op, buf, math.prod(shapes[op]), tuple(shapes[op]))
        for op, buf in call.args.items()
    )
    return _PreparedCall(spec, params, views)


def _run_one(task_id: int, call_index: int, memory: CpuTaskMemory) -> Completion:
    start = now_us()
    try:
        _execute(memory, call_index)
        status, error = CompletionStatus.OK, ""
    except Exception as exc:  # a kernel failure fails its task, not the daemon
        status, error = CompletionStatus.FAILED, f"{type(exc).__name__}: {exc}"
    return Completion(task_id, call_index, status, start, now_us(), error)


def _execute(memory: CpuTaskMemory, call_index: int) -> None:
    prepared = memory.calls[call_index]
    flats = memory.flats
    tensors = {
        op: flats[buf][:numel].view(shape) for op, buf, numel, shape in prepared.views
    }
    prepared.spec.reference(tensors, prepared.params)
