"""The cuda backend without a GPU: a fake driver module is injected (fakes live in
tests only).

`FakeDriver` stands in for cuda.bindings.driver: host memory plays device memory
(so pointers are real addresses), streams run their work at once unless a test
holds them, events carry a fake GPU clock in milliseconds, and a launched kernel
runs its catalog torch reference on the operands its packed args point to, so
what the backend packs is checked by what comes out. A preemptible kernel claims
blocks from its counter like the generated entry point (stopping on the flag or
after `stop_after_blocks` claims) and computes its call when the last block is
claimed. Modules are fake compiled objects: no NVRTC runs except in the one
test of `prepare_modules`.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import math
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from reefd.backends import cuda_usable, make_device, pick_backend
from reefd.backends.cuda import CudaDevice
from reefd.backends.cuda_driver import CheckedDriver, CudaError
from reefd.backends.cuda_kernels import PreparedModules, module_groups
from reefd.backends.cuda_queue import Anchor, bracket_us, to_host_us
from reefd.backends.device import DeviceLaunch, PadLaunch
from reefd.batching import derive
from reefd.clients.lower import lower
from reefd.config import DaemonConfig, load
from reefd.demo_models import mlp
from reefd.errors import BackendError, ConfigError
from reefd.kernels import catalog
from reefd.kernels.__main__ import SM_LIMITS, ctas_per_sm
from reefd.kernels.nvrtc import Compiled, FunctionResources
from reefd.kernels.spec import ITEMSIZE_BYTES, TORCH_DTYPE, KernelSpec
from reefd.kernels.wrappers import args_layout, pack_args, param_field
from reefd.scheduler.plan import CompletionStatus, Form, Stream
from reefd.weight_pool import digest

# --- the fake driver --------------------------------------------------------------


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_NOT_READY = 600
    CUDA_ERROR_ILLEGAL_ADDRESS = 700
    CUDA_ERROR_NOT_SUPPORTED = 801


OK = CUresult.CUDA_SUCCESS
STREAM_NAMES = ("rt", "be", "copy", "clock")
"""The backend creates its streams in this order."""


class FakeEvent:
    def __init__(self) -> None:
        self.time_ms: float | None = None
        self.error = False


class FakeStream:
    def __init__(self, driver: FakeDriver, name: str, priority: int) -> None:
        self.driver = driver
        self.name = name
        self.priority = priority
        self.ops: deque[tuple[str, Callable[[], None]]] = deque()
        self.held = False
        self.log: list[str] = []
        self.error = False

    def enqueue(self, what: str, op: Callable[[], None]) -> None:
        self.log.append(what)
        with self.driver.lock:
            self.ops.append((what, op))
            if not self.held:
                self.run()

    def run(self) -> None:
        with self.driver.lock:
            while self.ops:
                _, op = self.ops.popleft()
                op()
            self.driver.lock.notify_all()

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        self.run()


class FakeFunction:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeDriver:
    """Enough of cuda.bindings.driver for the backend (see the module docstring)."""

    CUresult = CUresult
    CU_MEMHOSTALLOC_PORTABLE = 1
    CU_MEMHOSTALLOC_DEVICEMAP = 2
    CUdevice_attribute = SimpleNamespace(
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT="sms",
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major",
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor",
    )
    CUfunction_attribute = SimpleNamespace(
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES="max_smem"
    )
    CUstream_flags = SimpleNamespace(CU_STREAM_NON_BLOCKING=1)
    CUevent_flags = SimpleNamespace(CU_EVENT_DEFAULT=0, CU_EVENT_DISABLE_TIMING=2)
    CUstreamWriteValue_flags = SimpleNamespace(CU_STREAM_WRITE_VALUE_DEFAULT=0)

    def __init__(self, *, sms: int = 4, devices: int = 1) -> None:
        self.sms = sms
        self.devices = devices
        self.init_result = OK
        self.lock = threading.Condition(threading.RLock())
        self.memory: dict[int, Any] = {}
        self.streams: dict[str, FakeStream] = {}
        self.gpu_ms = 100.0
        self.kernel_ms = 0.5
        self.stop_after_blocks: int | None = None
        self.fail_kernel = ""
        self.stream_mem_ops = True
        self.launches: list[dict[str, Any]] = []

    # device and context
    def cuInit(self, flags: int) -> tuple:
        return (self.init_result,)

    def cuDriverGetVersion(self) -> tuple:
        return OK, 13000

    def cuDeviceGetCount(self) -> tuple:
        return OK, self.devices

    def cuDeviceGet(self, index: int) -> tuple:
        return OK, index

    def cuDeviceGetName(self, length: int, dev: int) -> tuple:
        return OK, b"Fake H100\0\0\0"

    def cuDeviceGetAttribute(self, attr: str, dev: int) -> tuple:
        return OK, {"sms": self.sms, "major": 9, "minor": 0}[attr]

    def cuDevicePrimaryCtxRetain(self, dev: int) -> tuple:
        return OK, "ctx"

    def cuDevicePrimaryCtxRelease(self, dev: int) -> tuple:
        return (OK,)

    def cuCtxSetCurrent(self, ctx: Any) -> tuple:
        return (OK,)

    def cuCtxSynchronize(self) -> tuple:
        for stream in self.streams.values():
            stream.release()
        return (OK,)

    def cuMemGetInfo(self) -> tuple:
        return OK, 60 << 30, 80 << 30

    def cuGetErrorName(self, err: CUresult) -> tuple:
        return OK, err.name.encode()

    def cuGetErrorString(self, err: CUresult) -> tuple:
        return OK, b"fake " + err.name.lower().encode()

    # streams and events
    def cuCtxGetStreamPriorityRange(self) -> tuple:
        return OK, 0, -5

    def cuStreamCreateWithPriority(self, flags: int, priority: int) -> tuple:
        name = STREAM_NAMES[len(self.streams)]
        self.streams[name] = FakeStream(self, name, priority)
        return OK, self.streams[name]

    def cuStreamDestroy(self, stream: FakeStream) -> tuple:
        return (OK,)

    def cuStreamSynchronize(self, stream: FakeStream) -> tuple:
        stream.release()
        return (OK,)

    def cuStreamWaitEvent(self, stream: FakeStream, event: FakeEvent, flags: int):
        stream.log.append("wait")
        return (OK,)

    def cuEventCreate(self, flags: int) -> tuple:
        return OK, FakeEvent()

    def cuEventDestroy(self, event: FakeEvent) -> tuple:
        return (OK,)

    def cuEventRecord(self, event: FakeEvent, stream: FakeStream) -> tuple:
        event.time_ms = None

        def record() -> None:
            event.time_ms = self.gpu_ms
            event.error = stream.error

        stream.enqueue("record", record)
        return (OK,)

    def cuEventSynchronize(self, event: FakeEvent) -> tuple:
        with self.lock:
            if not self.lock.wait_for(lambda: event.time_ms is not None, 30):
                return (CUresult.CUDA_ERROR_NOT_READY,)
        return (CUresult.CUDA_ERROR_ILLEGAL_ADDRESS if event.error else OK,)

    def cuEventElapsedTime(self, start: FakeEvent, end: FakeEvent) -> tuple:
        assert start.time_ms is not None and end.time_ms is not None
        return OK, end.time_ms - start.time_ms

    # memory: host memory plays device memory, so pointers are real addresses
    def _alloc(self, nbytes: int) -> int:
        buf = ctypes.create_string_buffer(b"\xff" * nbytes, nbytes)  # NaN floats
        self.memory[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cuMemAlloc(self, nbytes: int) -> tuple:
        return OK, self._alloc(nbytes)

    def cuMemFree(self, dptr: int) -> tuple:
        del self.memory[dptr]
        return (OK,)

    def cuMemHostAlloc(self, nbytes: int, flags: int) -> tuple:
        return OK, self._alloc(nbytes)

    def cuMemHostGetDevicePointer(self, host: int, flags: int) -> tuple:
        return OK, host

    def cuMemFreeHost(self, host: int) -> tuple:
        return self.cuMemFree(host)

    def cuMemcpyHtoDAsync(self, dst: int, src: Any, n: int, stream: FakeStream):
        data = bytes(memoryview(src).cast("B"))[:n]  # pageable: staged at once
        stream.enqueue("h2d", lambda: ctypes.memmove(dst, data, n))
        return (OK,)

    def cuMemcpyDtoHAsync(self, dst: Any, src: int, n: int, stream: FakeStream):
        if not isinstance(dst, int):
            dst = ctypes.addressof((ctypes.c_char * n).from_buffer(dst))
        stream.enqueue("d2h", lambda: ctypes.memmove(dst, src, n))
        return (OK,)

    def cuMemsetD32Async(self, dst: int, value: int, count: int, stream: FakeStream):
        def memset() -> None:
            (ctypes.c_int32 * count).from_address(dst)[:] = [value] * count

        stream.enqueue(f"memset {value}", memset)
        return (OK,)

    def cuStreamWriteValue32(self, stream: FakeStream, dst: int, value: int, flags):
        if not self.stream_mem_ops:
            return (CUresult.CUDA_ERROR_NOT_SUPPORTED,)
        write = lambda: setattr(ctypes.c_int32.from_address(dst), "value", value)  # noqa: E731
        stream.enqueue(f"write {value}", write)
        return (OK,)

    # modules and launches
    def cuModuleLoadData(self, image: bytes) -> tuple:
        return OK, object()

    def cuModuleGetFunction(self, module: Any, name: bytes) -> tuple:
        return OK, FakeFunction(name.decode())

    def cuModuleUnload(self, module: Any) -> tuple:
        return (OK,)

    def cuFuncSetAttribute(self, fn: FakeFunction, attr: str, value: int) -> tuple:
        return (OK,)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        n = {"plain": 1, "preemptible": 4}.get(fn.name.rsplit("_", 1)[1], 8)
        pointers = (ctypes.c_void_p * n).from_address(params)
        sizes = _param_sizes(fn.name)
        raw = [ctypes.string_at(p, s) for p, s in zip(pointers, sizes, strict=True)]
        record = {"name": fn.name, "grid": gx, "block": bx, "raw": raw}
        self.launches.append(record)
        stream.enqueue(f"kernel {fn.name}", lambda: self._run(fn.name, raw, gx, stream))
        return (OK,)

    def _run(self, name: str, raw: list[bytes], grid: int, stream: FakeStream) -> None:
        self.gpu_ms += self.kernel_ms
        if self.fail_kernel and self.fail_kernel in name:
            stream.error = True
            return
        if name.startswith("reef_pad__"):
            self._run_padded(name, raw)
            return
        spec, form = _spec_of(name)
        if form == "plain":
            _reference(spec, raw[0])
            return
        n_vb, counter, flag = _i32(raw[1]), _u64(raw[2]), _u64(raw[3])
        if self._claim(counter, flag, n_vb, grid, budget=None):
            _reference(spec, raw[0])

    def _run_padded(self, name: str, raw: list[bytes]) -> None:
        rt, be = name.removeprefix("reef_pad__").split("__")
        _reference(_spec_of(f"reef_{rt}_plain")[0], raw[0])
        be_spec = _spec_of(f"reef_{be}_plain")[0]
        n_vb, counter, budget = _i32(raw[3]), _u64(raw[4]), _i32(raw[6])
        if self._claim(counter, _u64(raw[7]), n_vb, 1, budget):
            _reference(be_spec, raw[2])

    def _claim(self, counter: int, flag: int, n_vb: int, grid: int, budget) -> bool:
        """Claim blocks as the generated loop does; True when this launch
        claimed the call's last block (then the call's work is done)."""
        next_vb = ctypes.c_int32.from_address(counter)
        limit = self.stop_after_blocks
        claimed = 0
        while ctypes.c_int32.from_address(flag).value == 0:
            if limit is not None and claimed >= limit:
                return False
            if budget is not None and claimed >= budget:
                return False
            vb = next_vb.value
            next_vb.value += 1
            if vb >= n_vb:
                next_vb.value += grid - 1  # the other CTAs' last claims
                return False
            claimed += 1
            if vb == n_vb - 1:
                return True
        return False


def _i32(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


def _u64(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _spec_of(name: str) -> tuple[KernelSpec, str]:
    """The catalog spec and form of an entry name `reef_<kernel>_<tag>_<form>`."""
    body, form = name.removeprefix("reef_").rsplit("_", 1)
    kernel = max((k for k in catalog.names() if body.startswith(f"{k}_")), key=len)
    return catalog.get(kernel), form


def _param_sizes(name: str) -> list[int]:
    if name.startswith("reef_pad__"):
        rt, be = name.removeprefix("reef_pad__").split("__")
        rt_size = args_layout(_spec_of(f"reef_{rt}_plain")[0]).size_bytes
        be_size = args_layout(_spec_of(f"reef_{be}_plain")[0]).size_bytes
        return [rt_size, 4, be_size, 4, 8, 8, 4, 8]
    spec, form = _spec_of(name)
    size = args_layout(spec).size_bytes
    return [size] if form == "plain" else [size, 4, 8, 8]


def _unpack(spec: KernelSpec, raw: bytes) -> tuple[dict[str, int], dict[str, Any]]:
    """Operand pointers and params from a packed args struct."""
    fields = args_layout(spec).struct.from_buffer_copy(raw)
    pointers = {op.name: getattr(fields, op.name) or 0 for op in spec.operands}
    params: dict[str, Any] = {}
    for p in spec.params:
        f = param_field(spec, p.name)
        if p.kind == "ints":
            params[p.name] = tuple(getattr(fields, f"{f}_{i}") for i in range(p.size))
        elif p.kind == "str":
            params[p.name] = p.choices[getattr(fields, f)]
        elif p.kind == "bool":
            params[p.name] = bool(getattr(fields, f))
        else:
            params[p.name] = getattr(fields, f)
    return pointers, params


def _reference(spec: KernelSpec, raw: bytes) -> None:
    """Run the call the args describe with its torch reference, in place."""
    pointers, params = _unpack(spec, raw)
    shapes = spec.shapes(params)
    tensors = {}
    for op in spec.operands:
        if not pointers[op.name]:
            continue
        shape = shapes[op.name]
        nbytes = math.prod(shape) * ITEMSIZE_BYTES[op.dtypes[0]]
        memory = (ctypes.c_char * nbytes).from_address(pointers[op.name])
        flat = torch.frombuffer(memory, dtype=TORCH_DTYPE[op.dtypes[0]])
        tensors[op.name] = flat.view(shape)
    spec.reference(tensors, params)


# --- fixtures and helpers -----------------------------------------------------------


def fake_compiled(graph, batch=None, registers: int = 64) -> PreparedModules:
    """What `prepare` returns, without NVRTC: fake cubins, plausible resources."""
    groups = module_groups(graph, batch)
    return PreparedModules(
        "sm_90",
        tuple(
            (
                group,
                Compiled(
                    b"fake cubin",
                    "sm_90",
                    "",
                    {e.name: FunctionResources(registers=registers) for e in group},
                ),
            )
            for group in groups
        ),
    )


class Waker:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def started(fake: FakeDriver | None = None, **options: Any) -> CudaDevice:
    device = CudaDevice(driver=fake or FakeDriver(), **options)
    device.start(Waker())
    return device


def load_mlp(device: CudaDevice, batch: int = 1):
    model, inputs = mlp(batch)
    low = lower(model, inputs)
    weights = {name: t.numpy().tobytes() for name, t in low.weights.items()}
    digests = {name: digest(b) for name, b in weights.items()}
    handle = device.load(low.graph, weights, digests, compiled=fake_compiled(low.graph))
    frames = [t.numpy().tobytes() for t in inputs]
    return model, inputs, low.graph, handle, frames


def poll(device: CudaDevice, want: int, timeout_s: float = 10.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} completions"
        got += device.poll()
        time.sleep(0.001)
    return got


def run_task(device, handle, memory, graph, task_id: int, stream: Stream, form: Form):
    for i in range(len(graph.calls)):
        device.launch(DeviceLaunch(task_id, i, stream, form, handle, memory))
    return poll(device, len(graph.calls))


def output(device: CudaDevice, memory) -> torch.Tensor:
    (out,) = device.outputs(memory)
    return torch.frombuffer(bytearray(out), dtype=torch.float32)


# --- tests: args, results, counters -------------------------------------------------


def test_args_are_packed_once_per_call_with_weight_and_task_pointers():
    fake = FakeDriver()
    device = started(fake)
    try:
        _, _, graph, handle, frames = load_mlp(device)
        memory = device.alloc(handle, frames)
        run_task(device, handle, memory, graph, 1, Stream.RT, Form.PLAIN)
        offsets = memory.plan.layout.offsets
        for call, launch in zip(graph.calls, fake.launches, strict=True):
            spec = catalog.get(call.kernel)
            pointers = {
                op: handle.weights.get(buf, memory.arena.base + offsets.get(buf, 0))
                for op, buf in call.args.items()
            }
            assert launch["raw"][0] == pack_args(spec, call.params, pointers)
            assert launch["block"] == 256
            assert launch["grid"] == spec.virtual_blocks(
                spec.with_defaults(call.params)
            )
        cached = dict(memory.arena.params)
        run_task(device, handle, memory, graph, 2, Stream.RT, Form.PLAIN)
        assert all(memory.arena.params[k] is v for k, v in cached.items())
    finally:
        device.close()


def test_plain_and_preemptible_runs_match_the_torch_model():
    device = started()
    try:
        model, inputs, graph, handle, frames = load_mlp(device, batch=2)
        want = model(*inputs).detach().flatten()
        for task_id, form in ((1, Form.PLAIN), (2, Form.PREEMPTIBLE)):
            memory = device.alloc(handle, frames)
            done = run_task(device, handle, memory, graph, task_id, Stream.BE, form)
            assert {c.status for c in done} == {CompletionStatus.OK}
            torch.testing.assert_close(output(device, memory), want)
            device.free(memory)
    finally:
        device.close()


def test_a_preempted_call_reports_preempted_and_resumes_from_its_counter():
    fake = FakeDriver()
    device = started(fake)
    try:
        _, _, graph, handle, frames = load_mlp(device)
        whole = device.alloc(handle, frames)
        run_task(device, handle, whole, graph, 1, Stream.BE, Form.PREEMPTIBLE)
        memory = device.alloc(handle, frames)
        counter = ctypes.c_int32.from_address(
            memory.plan.layout.counter(memory.arena.base, 0)
        )
        fake.stop_after_blocks = 5
        launch = DeviceLaunch(2, 0, Stream.BE, Form.PREEMPTIBLE, handle, memory)
        device.launch(launch)
        (first,) = poll(device, 1)
        assert first.status is CompletionStatus.PREEMPTED and counter.value == 5
        device.launch(launch)
        (second,) = poll(device, 1)
        assert second.status is CompletionStatus.PREEMPTED and counter.value == 10
        fake.stop_after_blocks = None
        device.launch(launch)
        (third,) = poll(device, 1)
        assert third.status is CompletionStatus.OK and counter.value >= 64
        for i in range(1, len(graph.calls)):
            device.launch(
                DeviceLaunch(2, i, Stream.BE, Form.PREEMPTIBLE, handle, memory)
            )
        poll(device, len(graph.calls) - 1)
        assert torch.equal(output(device, memory), output(device, whole))
        per_sm = ctas_per_sm(64, 0, SM_LIMITS["sm_90"])  # 64 registers, no smem
        grids = {r["grid"] for r in fake.launches if r["name"].endswith("preemptible")}
        assert grids == {min(4 * per_sm, 64), 2}  # 4 SMs, capped at n_vb
    finally:
        device.close()


def test_the_mapped_flag_stops_a_kernel_before_its_first_block():
    fake = FakeDriver()
    device = started(fake, preempt_flag="mapped")
    try:
        _, _, graph, handle, frames = load_mlp(device)
        memory = device.alloc(handle, frames)
        fake.streams["be"].hold()
        device.launch(DeviceLaunch(1, 0, Stream.BE, Form.PREEMPTIBLE, handle, memory))
        device.set_preempt(True)  # a host store: no stream work
        assert "write 1" not in fake.streams["rt"].log
        fake.streams["be"].release()
        (done,) = poll(device, 1)
        assert done.status is CompletionStatus.PREEMPTED
        device.set_preempt(False)
        device.launch(DeviceLaunch(1, 0, Stream.BE, Form.PREEMPTIBLE, handle, memory))
        assert poll(device, 1)[0].status is CompletionStatus.OK
    finally:
        device.close()


@pytest.mark.parametrize("stream_mem_ops", [True, False])
def test_the_device_flag_is_raised_on_rt_and_lowered_on_be(stream_mem_ops):
    fake = FakeDriver()
    fake.stream_mem_ops = stream_mem_ops
    device = started(fake, preempt_flag="device")
    try:
        word = "write" if stream_mem_ops else "memset"
        assert device.describe().count(
            "cuStreamWriteValue32" if stream_mem_ops else "cuMemsetD32Async"
        )
        device.set_preempt(True)
        assert fake.streams["rt"].log[-2:] == [f"{word} 1", "record"]
        device.set_preempt(False)
        assert fake.streams["be"].log[-2:] == ["wait", f"{word} 0"]
    finally:
        device.close()


def test_a_padded_launch_runs_both_calls_and_reads_back_the_be_counter():
    fake = FakeDriver()
    device = started(fake)
    try:
        model, inputs, graph, rt, frames = load_mlp(device)
        rt_mem = device.alloc(rt, frames)
        be_mem = device.alloc(rt, frames)
        want = model(*inputs).detach().flatten()
        n = len(graph.calls)
        device._kernels.register(_padded_modules(graph))
        for i in range(n):
            pad = PadLaunch(7, i, 1000, rt, be_mem)
            device.launch(DeviceLaunch(3, i, Stream.RT, Form.PADDED, rt, rt_mem, pad))
        done = poll(device, 2 * n)
        assert [(c.task_id, c.call_index, c.status) for c in done] == [
            (t, i, CompletionStatus.OK) for i in range(n) for t in (3, 7)
        ]
        for memory in (rt_mem, be_mem):
            torch.testing.assert_close(output(device, memory), want)
    finally:
        device.close()


def _padded_modules(graph) -> PreparedModules:
    from reefd.kernels.wrappers import EntryPoint

    entries = []
    for call in graph.calls:
        spec = catalog.get(call.kernel)
        entries.append(EntryPoint.padded(spec, call.params, spec, call.params))
    unique = {e.name: e for e in entries}
    return PreparedModules(
        "sm_90",
        tuple(
            ((e,), Compiled(b"fake", "sm_90", "", {e.name: FunctionResources(64)}))
            for e in unique.values()
        ),
    )


def test_a_kernel_fault_fails_its_call_naming_the_cuda_error():
    fake = FakeDriver()
    fake.fail_kernel = "linear"
    device = started(fake)
    try:
        _, _, graph, handle, frames = load_mlp(device)
        memory = device.alloc(handle, frames)
        device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PLAIN, handle, memory))
        (done,) = poll(device, 1)
        assert done.status is CompletionStatus.FAILED
        assert "cuEventSynchronize" in done.error
        assert "CUDA_ERROR_ILLEGAL_ADDRESS" in done.error
    finally:
        device.close()


# --- tests: queues and clocks -------------------------------------------------------


def test_drop_queued_returns_exactly_the_launches_the_gpu_has_not_seen():
    fake = FakeDriver()
    device = started(fake, be_gpu_queue_launches=1)
    try:
        _, _, graph, handle, frames = load_mlp(device)
        memory = device.alloc(handle, frames)
        fake.streams["be"].hold()
        launches = [
            DeviceLaunch(1, i, Stream.BE, Form.PREEMPTIBLE, handle, memory)
            for i in range(3)
        ]
        for launch in launches:
            device.launch(launch)
        pushed = [r["name"] for r in fake.launches]
        assert len(pushed) == 1 and device.busy()
        assert device.drop_queued(Stream.BE) == launches[1:]
        assert device.drop_queued(Stream.BE) == []
        fake.streams["be"].release()
        (done,) = poll(device, 1)
        assert (done.task_id, done.call_index) == (1, 0)
        time.sleep(0.05)
        assert device.poll() == [] and len(fake.launches) == 1
        assert not device.busy()
    finally:
        device.close()


def test_rt_launches_are_pushed_up_to_the_rt_depth_then_as_room_frees():
    fake = FakeDriver()
    device = started(fake, rt_gpu_queue_launches=2)
    try:
        _, _, graph, handle, frames = load_mlp(device)
        memory = device.alloc(handle, frames)
        fake.streams["rt"].hold()
        for i in range(3):
            device.launch(DeviceLaunch(1, i, Stream.RT, Form.PLAIN, handle, memory))
        assert len(fake.launches) == 2
        fake.streams["rt"].release()
        done = poll(device, 3)
        assert [c.call_index for c in done] == [0, 1, 2]
    finally:
        device.close()


def test_event_times_are_anchored_to_the_host_clock():
    ticks = itertools.count(1_000_000, 10)  # thread-safe
    fake = FakeDriver()
    fake.kernel_ms = 2.0
    device = started(fake, clock_us=lambda: next(ticks))
    try:
        anchor = device._gpu._anchor
        # t0 = 1_000_000, t1 = 1_000_010: the event is placed mid-way, +-5 us
        assert (anchor.host_us, anchor.error_us) == (1_000_005, 5)
        _, _, graph, handle, frames = load_mlp(device)
        memory = device.alloc(handle, frames)
        device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PLAIN, handle, memory))
        device.launch(DeviceLaunch(1, 1, Stream.RT, Form.PLAIN, handle, memory))
        first, second = poll(device, 2)
        # the anchor event ran at GPU 100.0 ms; each kernel takes 2.0 ms
        assert (first.start_us, first.end_us) == (1_000_005, 1_002_005)
        assert (second.start_us, second.end_us) == (1_002_005, 1_004_005)
    finally:
        device.close()


def test_clock_anchor_arithmetic():
    assert bracket_us(100, 131) == (115, 16)
    anchor = Anchor(event=None, host_us=5_000, error_us=3)
    assert to_host_us(anchor, 1.2345) == 6_234  # 1.2345 ms after the anchor
    assert to_host_us(anchor, 0.0) == 5_000


# --- tests: memory ------------------------------------------------------------------


def test_the_memory_budget_is_a_clear_error_and_spare_arenas_are_reused():
    probe = started()
    try:
        _, _, _, handle, frames = load_mlp(probe)
        weights = probe.weight_stats()["unique_bytes"]
        arena = probe.alloc(handle, frames).arena.nbytes
    finally:
        probe.close()
    fake = FakeDriver()
    limit = weights + 8 + arena + arena // 2  # 8: the padded claim counters
    device = started(fake, device_memory_limit_bytes=limit, preempt_flag="mapped")
    try:
        _, _, graph, handle, frames = load_mlp(device)
        first = device.alloc(handle, frames)
        with pytest.raises(BackendError, match="device_memory_limit_bytes=") as err:
            device.alloc(handle, frames)
        assert f"needs {arena} bytes" in str(err.value)
        device.free(first)
        second = device.alloc(handle, frames)
        assert second.arena is first.arena
        stats = device.weight_stats()
        assert stats["device_memory_limit_bytes"] == limit
    finally:
        device.close()


def test_weights_are_copied_once_per_digest_and_freed_with_the_last_model():
    fake = FakeDriver()
    device = started(fake)
    try:
        one = load_mlp(device)[3]
        two = load_mlp(device)[3]
        stats = device.weight_stats()
        assert stats["referenced_bytes"] == 2 * stats["unique_bytes"]
        assert one.weights == two.weights
        used = stats["device_used_bytes"]
        device.unload(one)
        assert device.weight_stats()["device_used_bytes"] == used
        device.unload(two)
        assert device.weight_stats()["unique_bytes"] == 0
    finally:
        device.close()
    assert fake.memory == {}, "close left device or pinned memory allocated"


# --- tests: compiling ahead -----------------------------------------------------------


def test_module_groups_cover_every_batch_size():
    model, inputs = mlp(4)
    low = lower(model, tuple(t[:1] for t in inputs)).graph
    high = lower(model, inputs).graph
    graph, rule = derive(low, high, 1, 4, 4)
    names = {g[0].name for g in module_groups(graph, rule)}
    for size in range(1, 5):
        for call in lower(model, tuple(t[:size] for t in inputs)).graph.calls:
            spec = catalog.get(call.kernel)
            from reefd.kernels.wrappers import entry_name

            assert entry_name(spec, spec.with_defaults(call.params), "plain") in names
    for group in module_groups(graph, rule):
        assert [e.form for e in group] == ["plain", "preemptible"]


def test_prepare_compiles_plain_and_preemptible_entries_with_nvrtc():
    pytest.importorskip("cuda.bindings.nvrtc")
    model, inputs = mlp()
    graph = lower(model, inputs).graph
    device = CudaDevice(arch="sm_90")
    prepared = device.prepare(graph)
    names = prepared.entry_names()
    assert any(n.endswith("_plain") for n in names)
    assert any(n.endswith("_preemptible") for n in names)
    for group, compiled in prepared.groups:
        assert {e.name for e in group} <= set(compiled.functions)


def test_prepare_before_start_without_an_arch_is_a_clear_error():
    with pytest.raises(BackendError, match="start the device first"):
        CudaDevice().prepare(lower(*mlp()).graph)


# --- tests: backend choice, config, no driver ---------------------------------------


def test_pick_backend_uses_cuda_only_where_the_driver_initialises():
    fake = FakeDriver(devices=2)
    backend, why = pick_backend("auto", 1, driver=fake)
    assert backend == "cuda" and "2 GPU(s)" in why and "Fake H100" in why
    assert pick_backend("cuda", 0, driver=fake)[0] == "cuda"
    fake.init_result = CUresult.CUDA_ERROR_NO_DEVICE
    backend, why = pick_backend("auto", 0, driver=fake)
    assert backend == "cpu" and "CUDA_ERROR_NO_DEVICE" in why and "cpu backend" in why
    with pytest.raises(BackendError, match=r"^--backend cuda: .*CUDA_ERROR_NO_DEVICE"):
        pick_backend("cuda", 0, driver=fake)


def test_pick_backend_names_a_missing_gpu_index():
    ok, why = cuda_usable(3, driver=FakeDriver(devices=2))
    assert not ok and "GPU 3 does not exist" in why and "0..1" in why
    with pytest.raises(BackendError, match="GPU 3 does not exist"):
        pick_backend("cuda", 3, driver=FakeDriver(devices=2))
    assert pick_backend("cpu") == ("cpu", "--backend cpu requested")


def test_make_device_builds_the_cuda_device_from_config_without_io():
    config = DaemonConfig(preempt_flag="device", be_gpu_queue_launches=3)
    device = make_device("cuda", config)
    assert isinstance(device, CudaDevice)
    assert device.describe() == "cuda (GPU 0, not started)"
    assert device.weight_stats() == {}


def test_config_validates_the_cuda_fields(tmp_path):
    with pytest.raises(ConfigError, match="preempt_flag='pcie'"):
        load(socket_path="/tmp/x.sock", preempt_flag="pcie")
    with pytest.raises(ConfigError, match="device_memory_limit_bytes=-1"):
        load(socket_path="/tmp/x.sock", device_memory_limit_bytes=-1)
    with pytest.raises(ConfigError, match="be_gpu_queue_launches=0"):
        load(socket_path="/tmp/x.sock", be_gpu_queue_launches=0)
    assert load(socket_path="/tmp/x.sock").preempt_flag == "mapped"


def test_the_checked_driver_names_the_call_and_the_cuda_result():
    drv = CheckedDriver(FakeDriver())
    assert drv.cuDeviceGetCount() == 1
    assert drv.cuCtxGetStreamPriorityRange() == (0, -5)
    assert drv.cuInit(0) is None
    fake = FakeDriver()
    fake.init_result = CUresult.CUDA_ERROR_NO_DEVICE
    with pytest.raises(CudaError) as err:
        CheckedDriver(fake).cuInit(0)
    assert err.value.call == "cuInit"
    assert err.value.result_name == "CUDA_ERROR_NO_DEVICE"
    assert "fake cuda_error_no_device" in str(err.value)


def test_importing_the_backend_and_making_a_device_loads_no_driver():
    code = (
        "import reefd.backends.cuda as c; c.CudaDevice().describe(); "
        "print(any('libcuda.so' in line for line in open('/proc/self/maps')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_reefd_backend_cuda_without_a_driver_exits_with_a_message():
    if cuda_usable()[0]:
        pytest.skip("a usable GPU is present here")
    proc = subprocess.run(
        [sys.executable, "-m", "reefd", "--backend", "cuda", "--socket", "/tmp/r.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("reefd: --backend cuda: ")
    assert "Traceback" not in proc.stderr


def test_start_without_a_driver_is_a_backend_error():
    if cuda_usable()[0]:
        pytest.skip("a usable GPU is present here")
    with pytest.raises(BackendError, match="cuInit"):
        CudaDevice().start(lambda: None)


# --- tests: the register worker and the engine -------------------------------------


def _register_message(graph, weights) -> Any:
    from reefd.protocol import Kind, Message

    frames = [weights[b.name] for b in graph.weights]
    header = {"req": 3, "graph": graph.to_wire(), "priority": "be"}
    return Message(Kind.REGISTER, header, frames)


def test_the_register_worker_compiles_with_the_devices_prepare():
    from reefd.server import _register_event

    model, inputs = mlp()
    low = lower(model, inputs)
    weights = {name: t.numpy().tobytes() for name, t in low.weights.items()}
    seen: list = []
    prepare = lambda graph, rule: seen.append((graph, rule)) or "compiled!"  # noqa: E731
    event = _register_event(1, _register_message(low.graph, weights), prepare)
    assert event.compiled == "compiled!"
    assert seen == [(event.graph, None)]
    assert _register_event(1, _register_message(low.graph, weights)).compiled is None


def test_an_engine_serves_rt_and_be_requests_on_the_cuda_backend():
    import queue

    from reefd.engine import Engine, monotonic_us
    from reefd.events import ClientHello, InferRequest, RegisterModel
    from reefd.executor import Executor
    from reefd.protocol import Kind
    from reefd.scheduler import make_policy
    from reefd.scheduler.scheduler import Scheduler
    from reefd.scheduler.task import Priority

    fake = FakeDriver()
    device = CudaDevice(driver=fake, be_gpu_queue_launches=1)
    replies: queue.Queue = queue.Queue()
    executor = Executor(device, monotonic_us)
    engine = Engine(
        device,
        Scheduler(make_policy("reef"), be_inflight_cap=2),
        executor,
        lambda client, msg: replies.put(msg),
        policy_name="reef",
        default_slo_ms=1000.0,
        max_models_per_client=4,
        max_queued_per_client=64,
    )
    device.start(engine.wake)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    model, inputs = mlp()
    low = lower(model, inputs)
    weights = {name: t.numpy().tobytes() for name, t in low.weights.items()}
    digests = {name: digest(b) for name, b in weights.items()}
    want = model(*inputs).detach().flatten()
    try:
        engine.submit(ClientHello(1, 0, "test", 1))
        models = {}
        for req, priority in ((1, Priority.RT), (2, Priority.BE)):
            compiled = fake_compiled(low.graph)
            engine.submit(
                RegisterModel(1, req, low.graph, weights, priority, None, "mlp",
                              digests, None, compiled)
            )  # fmt: skip
            reply = replies.get(timeout=10)
            assert reply.kind is Kind.RESULT, reply.header
            models[priority] = reply.header["model"]
        frames = [t.numpy().tobytes() for t in inputs]
        desc = [("float32", tuple(inputs[0].shape))]
        fake.kernel_ms = 0.01
        reqs = {}
        for req in range(10, 30):
            priority = Priority.BE if req % 3 else Priority.RT
            reqs[req] = priority
            engine.submit(InferRequest(1, req, models[priority], desc, frames))
        for _ in reqs:
            reply = replies.get(timeout=20)
            assert reply.kind is Kind.RESULT, reply.header
            out = torch.frombuffer(bytearray(reply.frames[0]), dtype=torch.float32)
            torch.testing.assert_close(out, want)
        assert not device.busy()
    finally:
        engine.begin_shutdown(0)
        engine.wait_stopped(10)
        device.close()


def test_call_costs_come_from_this_gpus_profiles_only(tmp_path):
    """Padding on cuda needs measured block times: a model profiled with
    `reef-profile run --backend cuda` gets costs; anything else gets None."""
    from tests.sim.test_costs import ENV, _profile, _store

    graph = lower(*mlp()).graph
    medians = [12.0 * (i + 1) for i in range(len(graph.calls))]
    _store(tmp_path, ENV, _profile(graph, medians, registers=32)).close()
    unprofiled = CudaDevice(driver=FakeDriver())
    assert unprofiled.shape() is None  # not started: SMs unknown
    for path, want in ((str(tmp_path / "profiles.sqlite"), True), (None, False)):
        device = started(profiles_path=path)
        try:
            assert device.shape() is not None
            _, _, g, handle, frames = load_mlp(device)
            costs = device.call_costs(device.alloc(handle, frames))
            if not want:
                assert costs is None
                continue
            assert costs is not None and len(costs) == len(g.calls)
            shape = device.shape()
            for cost, median in zip(costs, medians, strict=True):
                slots = shape.sms * shape.ctas_per_sm(cost.registers, cost.smem_bytes)
                assert cost.vb_us * -(-cost.n_vb // slots) == pytest.approx(median)
        finally:
            device.close()
