"""Kernels for the cuda backend: compiled ahead, loaded once, planned per call.

Owns three things:
- `prepare_modules`: what `CudaDevice.prepare` runs on the server's register
  worker (never the engine thread): every call's plain and preemptible entry
  points compiled with `wrappers.build_module` (and its disk cache), also for
  every batch size a dynamic-batch model serves. No device is needed.
- `KernelTable`: kernels/launcher.py's `Launcher` (module loading, shared-memory
  limits, CTAs per SM, persistent grids) on the daemon's own context and checked
  driver, without Launcher's torch set-up; the daemon needs no torch on the GPU.
- `CallPlan`: one call's launch facts, fixed at model load: its functions, grid
  sizes, dynamic shared memory, and its args struct packed once with
  `wrappers.pack_args` (weight pointers filled, task-buffer pointers patched in
  per task arena by `CallPlan.args_for`).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reefd.batching import BatchRule, at_batch
from reefd.errors import BackendError, CompileError
from reefd.graph import KernelCall, KernelGraph
from reefd.kernels import catalog
from reefd.kernels.launcher import Launcher
from reefd.kernels.nvrtc import Compiled
from reefd.kernels.wrappers import EntryPoint, args_layout, build_module, pack_args

Group = tuple[EntryPoint, ...]
"""The entry points compiled into one module: a call's plain and preemptible
forms (one module per kernel variant, so cache keys are shared across models)."""


@dataclass(frozen=True)
class PreparedModules:
    """`prepare`'s result: compiled modules for `arch`, ready to load."""

    arch: str
    groups: tuple[tuple[Group, Compiled], ...]

    def entry_names(self) -> set[str]:
        return {e.name for group, _ in self.groups for e in group}


def _call_group(call: KernelCall) -> Group:
    spec = catalog.get(call.kernel)
    params = spec.with_defaults(call.params)
    return (EntryPoint.plain(spec, params), EntryPoint.preemptible(spec, params))


def module_groups(graph: KernelGraph, batch: BatchRule | None = None) -> list[Group]:
    """One group per distinct kernel variant the graph runs, at every batch size.

    Only calls whose params change with the batch are looked at again per batch
    size (the others run the same entry points at every size).
    """
    groups: dict[str, Group] = {}
    for call in graph.calls:
        group = _call_group(call)
        groups.setdefault(group[0].name, group)
    varying = sorted({index for index, _, _ in batch.params}) if batch else []
    if batch is not None and varying:
        for size in range(1, batch.max_batch):
            calls = at_batch(graph, size, batch).calls
            for index in varying:
                group = _call_group(calls[index])
                groups.setdefault(group[0].name, group)
    return list(groups.values())


def prepare_modules(
    graph: KernelGraph,
    arch: str,
    batch: BatchRule | None = None,
    jobs: int | None = None,
) -> PreparedModules:
    """Compile every module the graph needs (NVRTC, no device; thread-safe)."""
    groups = module_groups(graph, batch)
    jobs = jobs or max(1, min(8, (os.cpu_count() or 2) // 2))

    def build(group: Group) -> Compiled:
        try:
            return build_module(group, arch)
        except ValueError as exc:  # e.g. a kernel without a CUDA body yet
            raise CompileError(f"{group[0].name}: {exc}") from None

    with ThreadPoolExecutor(max_workers=min(jobs, max(1, len(groups)))) as pool:
        compiled = list(pool.map(build, groups))
    return PreparedModules(arch, tuple(zip(groups, compiled, strict=True)))


class KernelTable(Launcher):
    """Launcher's loading and occupancy code on the daemon's context.

    `Launcher.__init__` brings up torch's CUDA context; this sets the same
    fields from the daemon's own device instead. `drv` is a CheckedDriver, whose
    calls are already checked and unpacked, so `ok` passes values through.
    Used from the engine thread only.
    """

    def __init__(self, drv: Any, arch: str, sms: int) -> None:  # no super(): torch
        self.drv = drv
        self.arch = arch
        self.sms = sms
        self.l2_bytes = 0
        self._functions: dict[str, Any] = {}
        self._smem_limit: dict[str, int] = {}
        self._resources: dict[str, Any] = {}
        self._modules: list[Any] = []

    def ok(self, result: Any) -> Any:
        return result

    def register(self, prepared: PreparedModules) -> None:
        """Load the prepared modules not loaded yet (an entry is loaded once
        per daemon, whichever model brought it)."""
        if prepared.arch != self.arch:
            raise BackendError(
                f"kernels were compiled for {prepared.arch}, the GPU is {self.arch}"
            )
        for group, compiled in prepared.groups:
            if any(e.name not in self._functions for e in group):
                self._register(group, compiled)

    def loaded(self, name: str) -> bool:
        return name in self._functions

    def unload_all(self) -> None:
        modules, self._modules = self._modules, []
        self._functions.clear()
        for module in modules:
            self.drv.cuModuleUnload(module)


@dataclass(frozen=True)
class KernelParams:
    """A `void**` kernelParams array and the buffers it points into."""

    array: Any
    keep: tuple[Any, ...] = field(repr=False)

    @property
    def address(self) -> int:
        return ctypes.addressof(self.array)


def param_array(parts: Sequence[bytes]) -> KernelParams:
    """kernelParams for cuLaunchKernel: one buffer per parameter's raw bytes."""
    buffers = tuple(ctypes.create_string_buffer(p, len(p)) for p in parts)
    array = (ctypes.c_void_p * len(buffers))(*[ctypes.addressof(b) for b in buffers])
    return KernelParams(array, buffers)


@dataclass(frozen=True)
class CallPlan:
    """One kernel call as the device launches it (fixed at model load)."""

    plain: EntryPoint
    preemptible: EntryPoint
    plain_fn: Any
    preemptible_fn: Any
    n_vb: int
    """Virtual blocks of the call (the plain grid)."""
    persistent_ctas: int
    """Grid of the preemptible form: SMs x CTAs per SM, at most n_vb."""
    smem_bytes: int
    """Dynamic shared memory of both forms."""
    template: bytes
    """The packed args struct with weight pointers filled, task pointers 0."""
    patches: tuple[tuple[int, str], ...]
    """(byte offset of a pointer field in `template`, task buffer it points to)."""

    def args_for(self, offsets: Mapping[str, int], base: int) -> bytes:
        """The args struct for a task arena at `base` (buffer offsets given)."""
        raw = bytearray(self.template)
        for at, name in self.patches:
            struct.pack_into("<Q", raw, at, base + offsets[name])
        return bytes(raw)


def plan_call(
    table: KernelTable, call: KernelCall, weights: Mapping[str, int]
) -> CallPlan:
    """Functions, grids and packed args of one call; `weights` maps weight buffer
    names to device pointers. Entries not prepared are compiled here (disk
    cache first), which only happens for a batch size `prepare` did not see."""
    spec = catalog.get(call.kernel)
    params = spec.with_defaults(call.params)
    plain = EntryPoint.plain(spec, params)
    preemptible = EntryPoint.preemptible(spec, params)
    plain_fn, smem = table.function(plain)
    preemptible_fn, _ = table.function(preemptible)
    n_vb = spec.virtual_blocks(params)
    pointers = {op: weights.get(buf, 0) for op, buf in call.args.items()}
    fields = args_layout(spec).struct
    patches = tuple(
        (getattr(fields, op).offset, buf)
        for op, buf in call.args.items()
        if buf not in weights
    )
    return CallPlan(
        plain=plain,
        preemptible=preemptible,
        plain_fn=plain_fn,
        preemptible_fn=preemptible_fn,
        n_vb=n_vb,
        persistent_ctas=table.persistent_grid(preemptible, n_vb),
        smem_bytes=smem,
        template=pack_args(spec, params, pointers),
        patches=patches,
    )
