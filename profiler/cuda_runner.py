"""The cuda measuring backend: library kernels on a GPU, timed with CUDA events.

Owns running a lowered model's calls as reefd's own NVRTC-built entry points
(the plain form, or the preemptible form on the persistent grid the daemon
uses) through kernels/launcher.py on torch's primary context, and timing them:

- per call: eager launches with a CUDA event between every two calls, after a
  GPU sleep (torch.cuda._sleep) 1.5x as long as the host takes to queue the
  task, so every launch is queued before the first event runs and host launch
  costs stay out of the call times (bench/kernels.py's method);
- per task: the whole task captured once as a CUDA graph and replayed back to
  back between events (device time of the task with no host gaps);
- NVML over a window of back-to-back replays (at least WINDOW_S): clocks, mean
  power, GPM SM occupancy and DRAM bandwidth (nvml.py);
- co-runs: each task's graph replayed back to back on its own stream from its
  own host thread, spans measured against one origin event.

Untested without a GPU: this machine class has none. `CudaBackend()` raises a
BackendError naming what is missing (driver, GPU, cuda.bindings, CUDA torch,
NVRTC) before touching anything.

Imports torch and reefd; cuda.bindings and pynvml are imported lazily (through
the launcher and nvml.py).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from reefd.backends import cuda_driver_present
from reefd.errors import BackendError, CompileError, UnsupportedOp
from reefd.kernels import catalog
from reefd.kernels.spec import TORCH_DTYPE
from reefd.profiler.environment import environment
from reefd.profiler.nvml import Nvml
from reefd.profiler.records import Environment, GpuReadings
from reefd.profiler.runner import Measured, Span, TaskRunner, corun_in_threads

if TYPE_CHECKING:
    from reefd.clients.lower import Lowered
    from reefd.kernels.launcher import Launcher
    from reefd.kernels.wrappers import EntryPoint

WINDOW_S = 0.5
"""Shortest window of back-to-back replays NVML readings are taken over."""
IN_FLIGHT = 2
"""Replays a co-running thread keeps queued (so its stream never runs dry)."""


def missing_support() -> str | None:
    """Why the cuda backend cannot run here (None when it can)."""
    ok, why = cuda_driver_present()
    if not ok:
        return why
    try:
        import cuda.bindings.driver  # noqa: F401
    except ImportError as exc:
        return f"cuda.bindings is not importable ({exc}); pip install 'reefd[cuda]'"
    if not torch.cuda.is_available():
        return (
            f"torch {torch.__version__} sees no CUDA device (built for CUDA "
            f"{torch.version.cuda or 'none: a CPU-only build'})"
        )
    from reefd.kernels.nvrtc import nvrtc_version

    try:
        nvrtc_version()
    except CompileError as exc:
        return str(exc)
    return None


def _gaps_us(events: Sequence[torch.cuda.Event]) -> list[float]:
    """Microseconds between each two consecutive (completed) events."""
    pairs = zip(events[:-1], events[1:], strict=True)
    return [a.elapsed_time(b) * 1000.0 for a, b in pairs]


class _SleepCalibration:
    """GPU clock cycles per microsecond of torch.cuda._sleep (0: unavailable)."""

    def __init__(self) -> None:
        self.cycles_per_us = 0.0
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is None:
            return
        cycles, best = 1_000_000, math.inf
        for _ in range(3):
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            sleep(cycles)
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) * 1000.0)
        self.cycles_per_us = cycles / max(best, 1.0)

    def sleep(self, us: float) -> None:
        if self.cycles_per_us:
            torch.cuda._sleep(int(min(us, 200_000.0) * self.cycles_per_us))


class CudaBackend:
    """Tasks run on this process's current CUDA device."""

    name = "cuda"
    corun_method = (
        "cuda streams: two host threads, each replaying its task's CUDA graph "
        "back to back on its own stream"
    )

    def __init__(
        self,
        launcher: Launcher,
        nvml: Nvml | None,
        sleeper: _SleepCalibration,
        form: str,
    ) -> None:
        self.launcher = launcher
        self.nvml = nvml
        self.sleeper = sleeper
        self.form = form
        self.default_arch: str | None = launcher.arch
        self.origin = torch.cuda.Event(enable_timing=True)

    @classmethod
    def open(cls, threads: int, form: str, note: Callable[[str], None]) -> CudaBackend:
        """The current CUDA device, or a BackendError naming what is missing."""
        if why := missing_support():
            raise BackendError(f"--backend cuda: {why}")
        from reefd.kernels.launcher import Launcher

        torch.set_num_threads(threads)
        launcher = Launcher()
        sleeper = _SleepCalibration()
        if not sleeper.cycles_per_us:
            note("no torch.cuda._sleep: host launch gaps may be in the call times")
        bus = launcher.ok(launcher.drv.cuDeviceGetPCIBusId(64, launcher.device))
        nvml = Nvml.open(_bus_text(bus), torch.cuda.current_device(), note)
        return cls(launcher, nvml, sleeper, form)

    def environment(self, resources_arch: str | None) -> Environment:
        gpu: dict[str, Any] = {"sm_count": self.launcher.sms}
        if self.nvml is not None:
            gpu.update(self.nvml.facts())
        if not gpu.get("driver_version"):
            version = self.launcher.driver_version()
            major, minor = version // 1000, version % 1000 // 10
            gpu["driver_version"] = f"CUDA driver API {major}.{minor}"
        return environment(
            "cuda",
            device_name=torch.cuda.get_device_name(),
            resources_arch=resources_arch,
            **gpu,
        )

    def runner(self, lowered: Lowered, inputs: Sequence[torch.Tensor]) -> CudaRunner:
        return CudaRunner.load(self, lowered, inputs)

    def pair_runners(
        self, tasks: Sequence[tuple[Lowered, Sequence[torch.Tensor]]]
    ) -> tuple[TaskRunner, TaskRunner]:
        rt, be = (self.runner(lowered, inputs) for lowered, inputs in tasks)
        return rt, be

    def start_corun(self) -> None:
        torch.cuda.synchronize()
        self.origin.record()
        torch.cuda.synchronize()

    def corun(
        self,
        runners: tuple[TaskRunner, TaskRunner],
        on_run: Callable[[int, Span], bool],
    ) -> tuple[list[Span], list[Span]]:
        """Each runner from a host thread of its own (the GIL is released while
        a thread waits on its stream's events)."""
        return corun_in_threads(runners, on_run)

    def close(self) -> None:
        torch.cuda.synchronize()
        if self.nvml is not None:
            self.nvml.close()


def _bus_text(raw: Any) -> str | None:
    text = raw.decode(errors="replace") if isinstance(raw, bytes | bytearray) else ""
    return text.split("\x00", 1)[0] or None


def _allocate(
    lowered: Lowered, inputs: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every buffer as a flat CUDA tensor: weights and inputs copied in."""
    graph = lowered.graph
    flats: dict[str, torch.Tensor] = {}
    for buf, tensor in zip(graph.inputs, inputs, strict=True):
        flats[buf.name] = tensor.reshape(-1).to("cuda", TORCH_DTYPE[buf.dtype])
    for buf in graph.buffers:
        if buf.name in flats:
            continue
        dtype = TORCH_DTYPE[buf.dtype]
        if buf.name in lowered.weights:
            weight = lowered.weights[buf.name]
            flats[buf.name] = weight.reshape(-1).to("cuda", dtype)
        else:
            flats[buf.name] = torch.empty(buf.numel, dtype=dtype, device="cuda")
    return flats


def _load_entries(gpu: Launcher, entries: list[EntryPoint]) -> None:
    """Compile (2 at a time, disk-cached) and load every entry's module."""
    from reefd.profiler.facts import Resources

    groups: dict[str, list[EntryPoint]] = {}
    for entry in entries:
        group = Resources.group(entry.spec, entry.params)
        groups.setdefault(group[0].name, group)
    failed = gpu.load(groups.values(), jobs=2)
    if failed:
        group, exc = failed[0]
        raise BackendError(
            f"{len(failed)} module(s) failed to compile, first "
            f"{group[0].name}: {str(exc).splitlines()[0]}"
        )


class _Launch:
    """One call, packed once: which entry, its args and its grid."""

    def __init__(
        self, entry: EntryPoint, args: bytes, n_vb: int, grid: int, counter: int
    ) -> None:
        self.entry, self.args, self.n_vb, self.grid = entry, args, n_vb, grid
        self.counter = counter
        """Device address of this call's block counter (preemptible form)."""


class CudaRunner:
    """One lowered model on the GPU: operands allocated, every call packed."""

    def __init__(
        self,
        backend: CudaBackend,
        flats: dict[str, torch.Tensor],
        counters: torch.Tensor,
        launches: list[_Launch],
    ) -> None:
        self.backend, self.gpu = backend, backend.launcher
        self.flats = flats
        """Every buffer of the graph as a flat CUDA tensor (kept alive here)."""
        self.counters = counters
        self.launches = launches
        self.n_calls = len(launches)
        self.flag = torch.zeros(1, dtype=torch.int32, device="cuda")
        self.graph: torch.cuda.CUDAGraph | None = None

    @classmethod
    def load(
        cls, backend: CudaBackend, lowered: Lowered, inputs: Sequence[torch.Tensor]
    ) -> CudaRunner:
        """Compile and load the graph's entries, allocate, pack every call."""
        from reefd.kernels.wrappers import EntryPoint, pack_args

        graph, gpu = lowered.graph, backend.launcher
        if lacking := sorted(
            {c.kernel for c in graph.calls if not catalog.get(c.kernel).source}
        ):
            raise UnsupportedOp(
                f"{graph.name}: kernels without a CUDA body yet: {lacking}; "
                "profile this model with --backend cpu"
            )
        entries = []
        for call in graph.calls:
            spec = catalog.get(call.kernel)
            params = spec.with_defaults(call.params)
            form = backend.form if backend.form in spec.forms else "plain"
            entries.append((spec, params, getattr(EntryPoint, form)(spec, params)))
        _load_entries(gpu, [e for _, _, e in entries])
        flats = _allocate(lowered, inputs)
        counters = torch.zeros(max(1, len(entries)), dtype=torch.int32, device="cuda")
        launches = []
        for index, (call, (spec, params, entry)) in enumerate(
            zip(graph.calls, entries, strict=True)
        ):
            pointers = {op: flats[buf].data_ptr() for op, buf in call.args.items()}
            n_vb = spec.virtual_blocks(params)
            grid = n_vb
            if entry.form == "preemptible":
                grid = gpu.persistent_grid(entry, n_vb)
            counter = counters.data_ptr() + 4 * index
            args = pack_args(spec, params, pointers)
            launches.append(_Launch(entry, args, n_vb, grid, counter))
        return cls(backend, flats, counters, launches)

    # --- running ------------------------------------------------------------------

    def _launch_all(self, events: Sequence[torch.cuda.Event] = ()) -> None:
        """Queue the whole task; with events, `events[i]` before call i and
        `events[n]` after the last."""
        if self.backend.form == "preemptible":
            self.counters.zero_()
        flag = self.flag.data_ptr()
        for index, launch in enumerate(self.launches):
            if events:
                events[index].record()
            if launch.entry.form == "preemptible":
                self.gpu.launch_preemptible(
                    launch.entry, launch.grid, launch.args, launch.n_vb,
                    launch.counter, flag,
                )  # fmt: skip
            else:
                self.gpu.launch_plain(launch.entry, launch.args, launch.n_vb)
        if events:
            events[-1].record()

    def _capture(self) -> torch.cuda.CUDAGraph:
        if self.graph is None:
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._launch_all()
            torch.cuda.synchronize()
            self.graph = graph
        return self.graph

    def warm_up(self, runs: int) -> None:
        for _ in range(max(1, runs)):
            self._launch_all()
        torch.cuda.synchronize()
        self._capture().replay()
        torch.cuda.synchronize()

    def _host_us(self) -> float:
        """How long the host takes to queue one eager task, in us."""
        start = time.perf_counter()
        self._launch_all()
        host = (time.perf_counter() - start) * 1e6
        torch.cuda.synchronize()
        return host

    def _call_pass(self, host_us: float) -> list[float]:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(self.n_calls + 1)]
        self.backend.sleeper.sleep(1.5 * host_us + 50.0)
        self._launch_all(events)
        torch.cuda.synchronize()
        return _gaps_us(events)

    def _replays(self, runs: int) -> list[float]:
        """`runs` back-to-back replays of the task graph, each between events."""
        graph = self._capture()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(runs + 1)]
        self.backend.sleeper.sleep(100.0)
        events[0].record()
        for event in events[1:]:
            graph.replay()
            event.record()
        torch.cuda.synchronize()
        return _gaps_us(events)

    def measure(self, repeat: int, on_run: Callable[[], None]) -> Measured:
        host_us = self._host_us()
        call_us: list[list[float]] = [[] for _ in range(self.n_calls)]
        for _ in range(repeat):
            for index, us in enumerate(self._call_pass(host_us)):
                call_us[index].append(us)
            on_run()
        task_us = self._replays(repeat)
        readings = GpuReadings()
        nvml = self.backend.nvml
        if nvml is not None:
            median = sorted(task_us)[len(task_us) // 2]
            runs = max(repeat, math.ceil(WINDOW_S * 1e6 / max(median, 1.0)))
            torch.cuda.synchronize()
            with nvml.window() as window:
                self._replays(runs)
            readings = window.readings
        return Measured(tuple(task_us), tuple(tuple(c) for c in call_us), readings)

    def corun(self, keep_going: Callable[[Sequence[Span]], bool]) -> list[Span]:
        graph = self._capture()
        origin = self.backend.origin
        spans: list[Span] = []
        pending: collections.deque[tuple[torch.cuda.Event, torch.cuda.Event]] = (
            collections.deque()
        )

        def retire() -> None:
            start, end = pending.popleft()
            end.synchronize()
            spans.append(
                (origin.elapsed_time(start) * 1000.0, origin.elapsed_time(end) * 1000.0)
            )

        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            while keep_going(spans):
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                graph.replay()
                end.record()
                pending.append((start, end))
                if len(pending) >= IN_FLIGHT:
                    retire()
            while pending:
                retire()
        return spans

    def close(self) -> None:
        torch.cuda.synchronize()
        self.graph = None
        self.flats.clear()
