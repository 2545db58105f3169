"""Loading and launching NVRTC-built entry points on a real GPU.

Owns the host side of the kernel ABI at run time: compiling entry points
(`wrappers.build_module`, many modules at once if asked), loading their cubins
with `cuda.bindings.driver` on torch's primary context (so torch tensors'
`data_ptr()` are valid kernel operands), raising the dynamic shared-memory limit
where a body needs more than 48 KiB, and launching the plain, preemptible and
padded forms on torch's current stream. It also answers how many CTAs of an
entry fit on one SM (from ptxas's registers and shared memory, as
`python -m reefd.kernels check` computes it, and from the driver's occupancy
calculator), which fixes the persistent grid of a preemptible launch.

Every driver call goes through `Launcher.ok`, which raises BackendError naming
the CUresult. `cuda.bindings` and a CUDA build of torch are imported lazily, in
`Launcher()`, so this module loads on machines without either.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from reefd.errors import BackendError, ReefError
from reefd.kernels.__main__ import SM_LIMITS, ctas_per_sm
from reefd.kernels.nvrtc import Compiled, FunctionResources
from reefd.kernels.wrappers import CTA_THREADS, EntryPoint, build_module

_DEFAULT_SMEM_LIMIT = 48 * 1024
"""Dynamic shared memory a function may use before its attribute is raised."""


def i32(value: int) -> bytes:
    """A kernel parameter of type `int`."""
    return struct.pack("<i", value)


def ptr(value: int) -> bytes:
    """A kernel parameter of pointer type (a device address)."""
    return struct.pack("<Q", value)


class Launcher:
    """The driver API on torch's primary context: load entries, launch them."""

    def __init__(self) -> None:
        from cuda.bindings import driver  # lazily: only where a GPU is

        self.drv = driver
        torch.cuda.init()
        torch.zeros(1, device="cuda")  # makes torch's primary context current
        self.ok(driver.cuInit(0))
        index = torch.cuda.current_device()
        self.device = self.ok(driver.cuDeviceGet(index))
        self.ctx = self.ok(driver.cuDevicePrimaryCtxRetain(self.device))
        self.ok(driver.cuCtxSetCurrent(self.ctx))
        major, minor = torch.cuda.get_device_capability(index)
        self.arch = f"sm_{major}{minor}"
        props = torch.cuda.get_device_properties(index)
        self.sms: int = props.multi_processor_count
        self.l2_bytes: int = getattr(props, "L2_cache_size", 0)
        self._functions: dict[str, Any] = {}
        self._smem_limit: dict[str, int] = {}
        self._resources: dict[str, FunctionResources] = {}
        self._modules: list[Any] = []

    # --- driver calls -------------------------------------------------------------

    def ok(self, result: Any) -> Any:
        """Unpack a driver call's (CUresult, values...), raising on an error."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            _, name = self.drv.cuGetErrorName(err)
            raise BackendError(f"CUDA driver call failed: {name!r}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def driver_version(self) -> int:
        """cuDriverGetVersion: 13000 for CUDA 13.0."""
        return int(self.ok(self.drv.cuDriverGetVersion()))

    # --- loading ------------------------------------------------------------------

    def _register(self, entries: Sequence[EntryPoint], compiled: Compiled) -> None:
        module = self.ok(self.drv.cuModuleLoadData(compiled.cubin))
        self._modules.append(module)
        for entry in entries:
            fn = self.ok(self.drv.cuModuleGetFunction(module, entry.name.encode()))
            self._functions[entry.name] = fn
            self._smem_limit[entry.name] = _DEFAULT_SMEM_LIMIT
            self._resources[entry.name] = compiled.functions[entry.name]

    def _allow_smem(self, name: str, smem: int) -> None:
        """Raise a function's dynamic shared-memory limit to `smem` if below."""
        if smem > self._smem_limit[name]:
            attr = self.drv.CUfunction_attribute
            self.ok(
                self.drv.cuFuncSetAttribute(
                    self._functions[name],
                    attr.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem,
                )
            )
            self._smem_limit[name] = smem

    def load(
        self,
        groups: Iterable[Sequence[EntryPoint]],
        jobs: int = 1,
        progress: Callable[[int, int, Sequence[EntryPoint]], None] | None = None,
    ) -> list[tuple[Sequence[EntryPoint], Exception]]:
        """Compile each group of entries as one module (`jobs` at a time), load all.

        Groups whose entries are all loaded already are skipped. Compiling needs
        no device and runs in threads; loading happens here, in order. Returns the
        groups whose compile failed, with the error (the others are loaded).
        """
        todo = [
            list(g) for g in groups if any(e.name not in self._functions for e in g)
        ]
        failed: list[tuple[Sequence[EntryPoint], Exception]] = []

        def build(group: list[EntryPoint]) -> Compiled | Exception:
            try:
                return build_module(group, self.arch)
            except (ReefError, OSError, ValueError) as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for done, (group, compiled) in enumerate(
                zip(todo, pool.map(build, todo), strict=True), 1
            ):
                if isinstance(compiled, Exception):
                    failed.append((group, compiled))
                else:
                    self._register(group, compiled)
                if progress:
                    progress(done, len(todo), group)
        return failed

    def function(self, entry: EntryPoint) -> tuple[Any, int]:
        """(CUfunction, dynamic smem bytes) of an entry, compiled once; the
        function's shared-memory limit is raised to what these params need."""
        if entry.name not in self._functions:
            for _, exc in self.load([[entry]]):
                raise exc
        smem = entry.dynamic_smem_bytes()
        self._allow_smem(entry.name, smem)
        return self._functions[entry.name], smem

    def resources(self, entry: EntryPoint) -> FunctionResources:
        """What ptxas reported for the entry (registers, static smem, spills)."""
        self.function(entry)
        return self._resources[entry.name]

    # --- occupancy ----------------------------------------------------------------

    def ctas_per_sm(self, entry: EntryPoint) -> int:
        """Resident CTAs per SM from ptxas's registers and shared memory, as
        `python -m reefd.kernels check` computes it (sm_90 limits for an arch
        it has none for)."""
        res = self.resources(entry)
        limits = SM_LIMITS.get(self.arch, SM_LIMITS["sm_90"])
        smem = res.static_smem_bytes + entry.dynamic_smem_bytes()
        return ctas_per_sm(res.registers, smem, limits)

    def driver_ctas_per_sm(self, entry: EntryPoint) -> int:
        """The driver's occupancy calculator for the same entry (a cross-check)."""
        fn, smem = self.function(entry)
        return int(
            self.ok(
                self.drv.cuOccupancyMaxActiveBlocksPerMultiprocessor(
                    fn, CTA_THREADS, smem
                )
            )
        )

    def persistent_grid(self, entry: EntryPoint, n_vb: int) -> int:
        """CTAs of a preemptible launch at full occupancy: SMs x CTAs per SM, but
        no more CTAs than there are virtual blocks."""
        return max(1, min(self.sms * max(1, self.ctas_per_sm(entry)), n_vb))

    # --- launching ----------------------------------------------------------------

    def launch(self, entry: EntryPoint, grid: int, params: Sequence[bytes]) -> None:
        """Launch `grid` CTAs of 256 threads; `params` are the raw kernel params."""
        if grid < 1:
            raise ValueError(f"{entry.name}: grid must be >= 1, got {grid}")
        fn, smem = self.function(entry)
        buffers = [ctypes.create_string_buffer(p, len(p)) for p in params]
        pointers = (ctypes.c_void_p * len(buffers))(
            *[ctypes.addressof(b) for b in buffers]
        )
        stream = self.drv.CUstream(torch.cuda.current_stream().cuda_stream)
        self.ok(
            self.drv.cuLaunchKernel(
                fn,
                grid,
                1,
                1,
                CTA_THREADS,
                1,
                1,
                smem,
                stream,
                ctypes.addressof(pointers),
                0,
            )
        )

    def launch_plain(self, entry: EntryPoint, args: bytes, n_vb: int) -> None:
        """The plain form: one CTA per virtual block."""
        self.launch(entry, n_vb, [args])

    def launch_preemptible(
        self,
        entry: EntryPoint,
        grid: int,
        args: bytes,
        n_vb: int,
        next_vb: int,
        preempt: int,
    ) -> None:
        """The preemptible form on `grid` persistent CTAs.

        `next_vb` is the device address of the int32 block counter (0 to start,
        where the last launch stopped to resume); `preempt` that of the int flag
        (device memory, or a mapped host int from `mapped_flag`).
        """
        self.launch(entry, grid, [args, i32(n_vb), ptr(next_vb), ptr(preempt)])

    @contextlib.contextmanager
    def mapped_flag(self) -> Iterator[tuple[ctypes.c_int, int]]:
        """A host int the GPU reads through mapped memory: (host view, device ptr)."""
        drv = self.drv
        host = self.ok(drv.cuMemHostAlloc(4, drv.CU_MEMHOSTALLOC_DEVICEMAP))
        try:
            flag = ctypes.c_int.from_address(int(host))
            flag.value = 0
            device = self.ok(drv.cuMemHostGetDevicePointer(host, 0))
            yield flag, int(device)
        finally:
            torch.cuda.synchronize()
            self.ok(drv.cuMemFreeHost(host))
