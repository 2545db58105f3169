"""Memory of the cuda backend: the budget, models, task arenas, pinned slots.

Owns
- `DeviceMemory`: every cuMemAlloc/cuMemFree of the backend, counted against the
  per-device budget (`device_memory_limit_bytes`); an allocation past it first
  has spare arenas given back (`reclaim`), then fails with a BackendError naming
  the sizes and the setting.
- `ArenaLayout` / `Arena`: one device allocation per task holding its inputs,
  scratch, outputs and one int32 block counter per call (the preemptible form's
  `next_vb`, zeroed at alloc). Freed arenas are kept per graph and reused by the
  next task of that graph (cuMemFree can synchronize the device; reuse also
  keeps each arena's packed kernel params valid).
- `ModelStore`: loaded models (weights shared by content through WeightPool,
  calls planned once per graph and batch size) and task memory (alloc, outputs,
  free).
- `PinnedSlots`: page-locked int32 slots the GPU copies block counters into,
  read by the completion threads after the launch's event.

Imports reefd and the standard library; driver calls go through the
CheckedDriver it is given.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reefd.backends.cuda_driver import CudaError
from reefd.backends.cuda_kernels import CallPlan, KernelTable, plan_call
from reefd.errors import BackendError
from reefd.graph import Buffer, KernelGraph, Role
from reefd.weight_pool import WeightKey, WeightPool

ALIGN_BYTES = 256
"""Alignment of every buffer inside an arena (cuMemAlloc's own alignment)."""


def _align(n: int) -> int:
    return -(-n // ALIGN_BYTES) * ALIGN_BYTES


class DeviceMemory:
    """cuMemAlloc/cuMemFree with a byte budget; thread-safe."""

    def __init__(
        self,
        drv: Any,
        limit_bytes: int,
        reclaim: Callable[[int], int] = lambda need: 0,
    ) -> None:
        self._drv = drv
        self.limit_bytes = limit_bytes
        self.reclaim = reclaim
        """Called with the bytes missing; frees cached memory, returns bytes freed."""
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()
        self.used_bytes = 0

    def alloc(self, nbytes: int, what: str) -> int:
        """A device pointer to `nbytes` (at least 1) for `what` (named in errors)."""
        nbytes = max(1, nbytes)
        if self.used_bytes + nbytes > self.limit_bytes:
            self.reclaim(self.used_bytes + nbytes - self.limit_bytes)
        with self._lock:
            if self.used_bytes + nbytes > self.limit_bytes:
                raise BackendError(
                    f"device memory budget exceeded: {what} needs {nbytes} bytes, "
                    f"{self.used_bytes} of device_memory_limit_bytes="
                    f"{self.limit_bytes} are in use"
                )
            self.used_bytes += nbytes
        try:
            ptr = int(self._drv.cuMemAlloc(nbytes))
        except CudaError as exc:
            with self._lock:
                self.used_bytes -= nbytes
            raise BackendError(f"{what}: {exc}") from exc
        with self._lock:
            self._sizes[ptr] = nbytes
        return ptr

    def free(self, ptr: int) -> None:
        with self._lock:
            nbytes = self._sizes.pop(ptr)
            self.used_bytes -= nbytes
        self._drv.cuMemFree(ptr)

    def free_all(self) -> None:
        """Free whatever is still allocated (device close)."""
        for ptr in list(self._sizes):
            self.free(ptr)


# --- task arenas ---------------------------------------------------------------


@dataclass(frozen=True)
class ArenaLayout:
    """Where a graph's task buffers and call counters lie inside one arena."""

    offsets: dict[str, int]
    """Input, output and scratch buffer name -> byte offset."""
    counters_offset: int
    """Byte offset of the int32 counters, one per call, in call order."""
    n_calls: int
    nbytes: int

    @classmethod
    def of(cls, graph: KernelGraph) -> ArenaLayout:
        offsets: dict[str, int] = {}
        at = 0
        for buf in graph.buffers:
            if buf.role is not Role.WEIGHT:
                offsets[buf.name] = at
                at += _align(buf.nbytes)
        counters = at
        at += _align(4 * len(graph.calls))
        return cls(offsets, counters, len(graph.calls), at)

    def counter(self, base: int, call_index: int) -> int:
        """Device address of call `call_index`'s block counter."""
        return base + self.counters_offset + 4 * call_index


@dataclass(eq=False)
class Arena:
    """One task's device memory; kept and reused after the task is freed."""

    base: int
    nbytes: int
    ready: Any
    """Event recorded after the inputs are copied and the counters zeroed."""
    params: dict[tuple[int, str], Any] = field(default_factory=dict)
    """(call index, form) -> KernelParams, packed on first launch, kept for reuse."""


# --- pinned read-back slots ----------------------------------------------------


class PinnedSlots:
    """`count` page-locked int32s the GPU copies block counters into."""

    def __init__(self, drv: Any, count: int) -> None:
        self._drv = drv
        self.count = count
        self._host = int(drv.cuMemHostAlloc(4 * count, 0))
        self._free = list(range(count - 1, -1, -1))

    def take(self) -> int:
        """A free slot's index (the caller holds the device lock)."""
        if not self._free:
            raise BackendError(f"all {self.count} counter read-back slots in use")
        return self._free.pop()

    def give(self, slot: int) -> None:
        self._free.append(slot)

    def address(self, slot: int) -> int:
        return self._host + 4 * slot

    def read(self, slot: int) -> int:
        return ctypes.c_int32.from_address(self.address(slot)).value

    def close(self) -> None:
        self._drv.cuMemFreeHost(self._host)


# --- models and task memory ----------------------------------------------------


def _bytes_view(data: Any) -> memoryview:
    """A bytes view of a weight or input (zmq frames expose `.buffer`)."""
    return memoryview(data.buffer if hasattr(data, "buffer") else data)


@dataclass(eq=False)
class GraphPlan:
    """A model's graph at one batch size: arena layout, calls, spare arenas."""

    graph: KernelGraph
    layout: ArenaLayout
    calls: list[CallPlan]
    spare: list[Arena] = field(default_factory=list)


@dataclass(eq=False)
class CudaModel:
    graph: KernelGraph
    weights: dict[str, int]
    """Weight buffer name -> device pointer (shared through the weight pool)."""
    keys: list[WeightKey]
    plans: dict[int, GraphPlan] = field(default_factory=dict)
    """By id(graph) (each plan keeps its graph, so the id stays valid)."""


@dataclass(eq=False)
class CudaTaskMemory:
    model: CudaModel
    plan: GraphPlan
    arena: Arena
    waited: set[Any] = field(default_factory=set)
    """Streams already ordered after this arena's input copies."""


class ModelStore:
    """Loaded models and task memory; used from the engine thread only.

    Weights are copied once per content digest (WeightPool); every call is
    planned once per graph (packed args, functions, grids); a task gets an arena
    whose inputs and counters are written on the copy stream, ordered before
    its first launch by the arena's `ready` event.
    """

    def __init__(
        self, drv: Any, memory: DeviceMemory, kernels: KernelTable, copy: Any
    ) -> None:
        self._drv = drv
        self._memory = memory
        self._kernels = kernels
        self._copy = copy
        self._pool: WeightPool[int] = WeightPool(free=memory.free)
        self._models: dict[int, CudaModel] = {}
        memory.reclaim = self.reclaim

    def load(
        self,
        graph: KernelGraph,
        weights: Mapping[str, Any],
        digests: Mapping[str, str],
    ) -> CudaModel:
        pointers: dict[str, int] = {}
        keys: list[WeightKey] = []
        try:
            for buf in graph.weights:
                key = (digests[buf.name], buf.dtype, buf.nbytes)
                pointers[buf.name] = self._pool.acquire(
                    key, lambda b=buf: self._upload(b, weights[b.name])
                )
                keys.append(key)
            self._drv.cuStreamSynchronize(self._copy)
            model = CudaModel(graph, pointers, keys)
            model.plans[id(graph)] = self._plan(graph, pointers)
        except BaseException:
            for key in keys:
                self._pool.release(key)
            raise
        self._models[id(model)] = model
        return model

    def _upload(self, buf: Buffer, data: Any) -> int:
        view = _bytes_view(data)
        if view.nbytes != buf.nbytes:
            raise BackendError(
                f"weight {buf.name!r}: {view.nbytes} bytes, want {buf.nbytes}"
            )
        dptr = self._memory.alloc(buf.nbytes, f"weight {buf.name!r}")
        try:
            self._drv.cuMemcpyHtoDAsync(dptr, view, buf.nbytes, self._copy)
        except BaseException:
            self._memory.free(dptr)
            raise
        return dptr

    def _plan(self, graph: KernelGraph, weights: dict[str, int]) -> GraphPlan:
        calls = [plan_call(self._kernels, call, weights) for call in graph.calls]
        return GraphPlan(graph, ArenaLayout.of(graph), calls)

    def unload(self, model: CudaModel) -> None:
        for plan in model.plans.values():
            while plan.spare:
                self._free_arena(plan.spare.pop())
        model.plans.clear()
        for key in model.keys:
            self._pool.release(key)
        model.keys.clear()
        self._models.pop(id(model), None)

    def unload_all(self) -> None:
        for model in list(self._models.values()):
            self.unload(model)

    def stats(self) -> dict[str, int]:
        return {
            **self._pool.stats(),
            "device_used_bytes": self._memory.used_bytes,
            "device_memory_limit_bytes": self._memory.limit_bytes,
        }

    def alloc(
        self, model: CudaModel, inputs: list[Any], graph: KernelGraph | None = None
    ) -> CudaTaskMemory:
        """An arena (a spare one when there is one) with the inputs copied and
        every call's counter zeroed on the copy stream, then `ready` recorded."""
        graph = graph or model.graph
        plan = model.plans.get(id(graph))
        if plan is None or plan.graph is not graph:
            plan = model.plans[id(graph)] = self._plan(graph, model.weights)
        arena = plan.spare.pop() if plan.spare else self._new_arena(plan)
        drv, layout = self._drv, plan.layout
        try:
            for buf, data in zip(graph.inputs, inputs, strict=True):
                view = _bytes_view(data)
                if view.nbytes != buf.nbytes:
                    raise BackendError(
                        f"input {buf.name!r}: {view.nbytes} bytes, want {buf.nbytes}"
                    )
                at = arena.base + layout.offsets[buf.name]
                drv.cuMemcpyHtoDAsync(at, view, buf.nbytes, self._copy)
            counters = layout.counter(arena.base, 0)
            drv.cuMemsetD32Async(counters, 0, layout.n_calls, self._copy)
            drv.cuEventRecord(arena.ready, self._copy)
        except BaseException:
            plan.spare.append(arena)
            raise
        return CudaTaskMemory(model, plan, arena)

    def _new_arena(self, plan: GraphPlan) -> Arena:
        nbytes = plan.layout.nbytes
        base = self._memory.alloc(nbytes, f"a task of {plan.graph.name!r}")
        flags = self._drv.CUevent_flags.CU_EVENT_DISABLE_TIMING
        return Arena(base, nbytes, self._drv.cuEventCreate(flags))

    def _free_arena(self, arena: Arena) -> None:
        self._drv.cuEventDestroy(arena.ready)
        self._memory.free(arena.base)

    def reclaim(self, need_bytes: int) -> int:
        """Free spare arenas until `need_bytes` are back; returns bytes freed."""
        freed = 0
        for model in list(self._models.values()):
            for plan in model.plans.values():
                while plan.spare and freed < need_bytes:
                    arena = plan.spare.pop()
                    self._free_arena(arena)
                    freed += arena.nbytes
        return freed

    def outputs(self, memory: CudaTaskMemory) -> list[Any]:
        """The task's outputs copied to host bytearrays (copy stream, synced)."""
        out: list[Any] = []
        offsets = memory.plan.layout.offsets
        for buf in memory.plan.graph.outputs:
            host = bytearray(buf.nbytes)
            at = memory.arena.base + offsets[buf.name]
            self._drv.cuMemcpyDtoHAsync(host, at, buf.nbytes, self._copy)
            out.append(host)
        self._drv.cuStreamSynchronize(self._copy)
        return out

    def free(self, memory: CudaTaskMemory) -> None:
        """Keep the arena for the next task of the same graph."""
        plan = memory.plan
        if memory.model.plans.get(id(plan.graph)) is plan:
            plan.spare.append(memory.arena)
        else:
            self._free_arena(memory.arena)
