"""The cuda backend: kernel graphs on one GPU through the CUDA driver API.

`CudaDevice` opens GPU `gpu_index` (PCI bus order) on its primary context (the
one torch uses, where torch is present) and wires the pieces:
- cuda_driver.py: the checked driver (every call raises naming its CUresult);
- cuda_kernels.py: NVRTC modules compiled by `prepare` on the server's register
  worker, loaded once, and each call's functions, grids and packed args;
- cuda_memory.py: the memory budget, weights shared by content, task arenas;
- cuda_flag.py: the preempt flag in mapped host or device memory;
- cuda_streams.py / cuda_queue.py: host queues, GPU streams, completion threads
  and the clock anchor.

Threads: the engine thread makes every Device call except `prepare` (register
worker, no device state); one completion thread per stream (`reefd-cuda-rt`,
`reefd-cuda-be`). Each thread makes the context current once (`_bind`).
Streams: RT at the greatest priority, BE at the least, a copy stream for inputs
and outputs, and an idle clock stream for anchors.

Imports cuda.bindings only lazily (`start`), so this module loads without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from reefd.backends.cuda_driver import (
    CheckedDriver,
    load_driver,
    use_pci_bus_order,
    version_text,
)
from reefd.backends.cuda_flag import PLACEMENTS, DeviceFlag, MappedFlag
from reefd.backends.cuda_kernels import KernelTable, PreparedModules, prepare_modules
from reefd.backends.cuda_memory import (
    CudaModel,
    CudaTaskMemory,
    DeviceMemory,
    ModelStore,
)
from reefd.backends.cuda_streams import GpuStreams
from reefd.backends.device import Device, DeviceLaunch
from reefd.batching import BatchRule
from reefd.errors import BackendError
from reefd.graph import KernelGraph
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.plan import Completion, Stream
from reefd.sim.shapes import device_shape

log = logging.getLogger("reefd.cuda")

HEADROOM_DIVISOR = 20
"""With no explicit limit, the budget is free memory less 1/20 of the card."""


def now_us() -> int:
    return time.monotonic_ns() // 1000


class CudaDevice(Device):
    name = "cuda"

    def __init__(
        self,
        *,
        gpu_index: int = 0,
        preempt_flag: str = "mapped",
        device_memory_limit_bytes: int = 0,
        rt_gpu_queue_launches: int = 64,
        be_gpu_queue_launches: int = 2,
        driver: Any = None,
        clock_us: Callable[[], int] = now_us,
        arch: str | None = None,
        profiles_path: str | None = None,
    ) -> None:
        """No I/O: `start` opens the GPU. `driver` stands in for
        cuda.bindings.driver (tests); `arch` lets `prepare` run before `start`.
        `profiles_path` is the profile store that per-call costs for padding
        come from (`reef-profile run --backend cuda` on this GPU); without one,
        or for a model never profiled, `call_costs` is None and reef does not
        pad that task."""
        if preempt_flag not in PLACEMENTS:
            raise BackendError(
                f"preempt_flag={preempt_flag!r}: choose one of {list(PLACEMENTS)}"
            )
        self._gpu_index = gpu_index
        self._flag_placement = preempt_flag
        self._limit_bytes = device_memory_limit_bytes
        self._depths = {
            Stream.RT: rt_gpu_queue_launches,
            Stream.BE: be_gpu_queue_launches,
        }
        self._raw_driver = driver
        self._clock_us = clock_us
        self._arch = arch
        self._tls = threading.local()
        self._drv: Any = None
        self._info = ""
        self._shape: DeviceShape | None = None
        self._profiles_path = profiles_path
        self._costs: Any = None  # StoreCosts, opened on the engine thread

    # opening the GPU ------------------------------------------------------------
    def start(self, waker: Callable[[], None]) -> None:
        sms, free, total = self._open_context()
        assert self._arch is not None  # _open_context sets it
        self._shape = device_shape(sms, self._arch)
        drv = self._drv
        limit = self._limit_bytes or max(0, free - total // HEADROOM_DIVISOR)
        least, greatest = drv.cuCtxGetStreamPriorityRange()
        flags = drv.CUstream_flags.CU_STREAM_NON_BLOCKING
        self._streams = {
            Stream.RT: drv.cuStreamCreateWithPriority(flags, greatest),
            Stream.BE: drv.cuStreamCreateWithPriority(flags, least),
        }
        self._copy = drv.cuStreamCreateWithPriority(flags, greatest)
        self._clock_stream = drv.cuStreamCreateWithPriority(flags, greatest)
        self._memory = DeviceMemory(drv, limit)
        self._kernels = KernelTable(drv, self._arch, sms)
        self._models = ModelStore(drv, self._memory, self._kernels, self._copy)
        if self._flag_placement == "mapped":
            self._flag: MappedFlag | DeviceFlag = MappedFlag(drv)
        else:
            rt, be = self._streams[Stream.RT], self._streams[Stream.BE]
            self._flag = DeviceFlag(drv, self._memory, rt, be)
        claims = self._memory.alloc(4 * len(Stream), "padded-launch claim counters")
        self._gpu = GpuStreams(
            drv,
            self._streams,
            self._clock_stream,
            self._depths,
            self._kernels,
            self._flag.device_ptr,
            claims,
            self._clock_us,
        )
        self._info = self._describe(sms, total, limit)
        self._gpu.start(waker, self._bind)

    def _open_context(self) -> tuple[int, int, int]:
        """Initialise the driver, make GPU `gpu_index`'s primary context current;
        returns (SM count, free bytes, total bytes) and sets the arch."""
        use_pci_bus_order()
        drv = self._drv = CheckedDriver(self._raw_driver or load_driver())
        drv.cuInit(0)
        count = drv.cuDeviceGetCount()
        if not 0 <= self._gpu_index < count:
            raise BackendError(
                f"GPU {self._gpu_index} does not exist: the CUDA driver sees "
                f"{count} GPU(s)"
            )
        self._dev = drv.cuDeviceGet(self._gpu_index)
        self._ctx = drv.cuDevicePrimaryCtxRetain(self._dev)
        self._bind()
        attr = drv.CUdevice_attribute
        sms, major, minor = (
            drv.cuDeviceGetAttribute(
                getattr(attr, f"CU_DEVICE_ATTRIBUTE_{name}"), self._dev
            )
            for name in (
                "MULTIPROCESSOR_COUNT",
                "COMPUTE_CAPABILITY_MAJOR",
                "COMPUTE_CAPABILITY_MINOR",
            )
        )
        self._arch = f"sm_{major}{minor}"
        free, total = drv.cuMemGetInfo()
        return sms, free, total

    def _describe(self, sms: int, total: int, limit: int) -> str:
        drv = self._drv
        name = drv.cuDeviceGetName(256, self._dev)
        name = name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else name
        try:
            from cuda.bindings import __version__ as bindings
        except ImportError:
            bindings = "?"
        try:
            from reefd.kernels.nvrtc import nvrtc_version

            nvrtc = ".".join(map(str, nvrtc_version()))
        except Exception:  # describing must not fail for want of NVRTC
            nvrtc = "missing"
        flag = self._flag_placement
        if isinstance(self._flag, DeviceFlag):
            flag += f" ({self._flag.write_call})"
        driver = version_text(drv.cuDriverGetVersion())
        return (
            f"cuda: GPU {self._gpu_index} {name} ({self._arch}, {sms} SMs, "
            f"{total / 2**30:.0f} GiB), CUDA driver {driver}, cuda-bindings "
            f"{bindings}, NVRTC {nvrtc}; preempt flag {flag}; GPU queues RT "
            f"{self._depths[Stream.RT]} / BE {self._depths[Stream.BE]} launches; "
            f"memory budget {limit / 2**30:.1f} GiB"
        )

    def shape(self) -> DeviceShape | None:
        """The opened GPU's SMs and its arch's occupancy rule (None before
        `start`)."""
        return self._shape

    def call_costs(self, memory: CudaTaskMemory) -> tuple[CallCost, ...] | None:
        """Profiled costs of the task's graph (engine thread; the store is
        opened there on first use and read once per graph)."""
        shape = self.shape()
        if shape is None or self._profiles_path is None:
            return None
        if self._costs is None:
            from reefd.sim.costs import RooflineCosts, StoreCosts

            self._costs = StoreCosts.open(
                self._profiles_path, shape, RooflineCosts(shape), backend="cuda"
            )
        return self._costs.profiled(memory.plan.graph)

    def describe(self) -> str:
        return self._info or f"cuda (GPU {self._gpu_index}, not started)"

    def _bind(self) -> None:
        """Make the primary context current on the calling thread (once each)."""
        if self._drv is None:
            raise BackendError(
                "the cuda device is used before start() or after close()"
            )
        if not getattr(self._tls, "bound", False):
            self._drv.cuCtxSetCurrent(self._ctx)
            self._tls.bound = True

    # compiling and loading --------------------------------------------------------
    def prepare(
        self, graph: KernelGraph, batch: BatchRule | None = None
    ) -> PreparedModules:
        """Compile every module the graph needs (register worker; no device)."""
        if self._arch is None:
            raise BackendError("prepare needs the GPU's arch: start the device first")
        return prepare_modules(graph, self._arch, batch)

    def load(
        self,
        graph: KernelGraph,
        weights: Mapping[str, Any],
        digests: Mapping[str, str],
        compiled: PreparedModules | None = None,
    ) -> CudaModel:
        """Load modules, copy weights once per digest, plan every call.

        `compiled` is what `prepare` made on the register worker; without it the
        graph is compiled here (tools and tests; the daemon always passes it).
        """
        self._bind()
        self._kernels.register(compiled or self.prepare(graph))
        return self._models.load(graph, weights, digests)

    def unload(self, model: CudaModel) -> None:
        self._bind()
        self._models.unload(model)

    def weight_stats(self) -> dict[str, int]:
        if self._drv is None:
            return {}
        return self._models.stats()

    def alloc(
        self, model: CudaModel, inputs: list[Any], graph: KernelGraph | None = None
    ) -> CudaTaskMemory:
        self._bind()
        return self._models.alloc(model, inputs, graph)

    def outputs(self, memory: CudaTaskMemory) -> list[Any]:
        self._bind()
        return self._models.outputs(memory)

    def free(self, memory: CudaTaskMemory) -> None:
        self._bind()
        self._models.free(memory)

    # launching ----------------------------------------------------------------------
    def launch(self, launch: DeviceLaunch) -> None:
        self._bind()
        self._gpu.launch(launch)

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        return self._gpu.drop_queued(stream)

    def set_preempt(self, flag: bool) -> None:
        self._bind()
        with self._gpu.lock:  # a device flag's writes are ordered against pushes
            self._flag.set(flag)

    def poll(self) -> list[Completion]:
        return self._gpu.poll()

    def busy(self) -> bool:
        return self._gpu.busy()

    # closing ------------------------------------------------------------------------
    def close(self) -> None:
        """Finish what is in flight, synchronize, free everything."""
        if self._drv is None:
            return
        gpu = getattr(self, "_gpu", None)
        if gpu is not None:
            gpu.stop()
        try:
            self._bind()
        except BackendError as exc:
            log.warning("cuda close: %s", exc)
            return
        drv = self._drv
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("synchronize", drv.cuCtxSynchronize),
            ("models", lambda: self._models.unload_all()),
            ("events", lambda: gpu and gpu.destroy()),
            ("flag", lambda: self._flag.close()),
            ("device memory", lambda: self._memory.free_all()),
            ("streams", self._destroy_streams),
            ("modules", lambda: self._kernels.unload_all()),
            ("context", lambda: drv.cuDevicePrimaryCtxRelease(self._dev)),
        ]
        for what, step in steps:
            try:
                step()
            except (BackendError, AttributeError) as exc:  # AttributeError: a
                log.warning("cuda close (%s): %s", what, exc)  # start cut short
        self._drv = None

    def _destroy_streams(self) -> None:
        for stream in [*self._streams.values(), self._copy, self._clock_stream]:
            self._drv.cuStreamDestroy(stream)
