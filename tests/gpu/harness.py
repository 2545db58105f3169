"""What every GPU kernel test shares: the driver, random calls, the checks.

`Gpu` loads NVRTC-built entry points on torch's primary context and launches
them on torch's current stream; `make_call` builds a kernel call's operands on
the GPU (random, or from `fill`) with its torch reference result; the asserts
compare against torch (named precision) or bit for bit against the plain form.
The `gpu` fixture lives in tests/gpu/conftest.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reefd.kernels import catalog
from reefd.kernels.spec import TORCH_DTYPE, KernelSpec
from reefd.kernels.wrappers import EntryPoint, build_module, pack_args

PRECISION = (
    "float32 kernels vs the torch reference on the same GPU with TF32 off "
    "(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 "
    "= False), rtol = atol = 1e-4"
)
RTOL = ATOL = 1e-4
THREADS = 256
DEVICE = "cuda"
"""Where tensors live (the module-level name lets a harness point it elsewhere)."""


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


# --- the device -----------------------------------------------------------------


class Gpu:
    """The driver API on torch's primary context: load entries, launch them."""

    def __init__(self) -> None:
        from cuda.bindings import driver  # lazily: only where a GPU is

        self.drv = driver
        torch.cuda.init()
        torch.zeros(1, device="cuda")  # makes torch's primary context current
        self.ok(driver.cuInit(0))
        index = torch.cuda.current_device()
        device = self.ok(driver.cuDeviceGet(index))
        self.ctx = self.ok(driver.cuDevicePrimaryCtxRetain(device))
        self.ok(driver.cuCtxSetCurrent(self.ctx))
        major, minor = torch.cuda.get_device_capability(index)
        self.arch = f"sm_{major}{minor}"
        self.sms = torch.cuda.get_device_properties(index).multi_processor_count
        self._functions: dict[str, tuple[Any, int]] = {}
        self._modules: list[Any] = []

    def ok(self, result: Any) -> Any:
        """Unpack a driver call's (CUresult, values...), failing on an error."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            _, name = self.drv.cuGetErrorName(err)
            raise AssertionError(f"CUDA driver call failed: {name!r}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def function(self, entry: EntryPoint) -> tuple[Any, int]:
        """(CUfunction, dynamic smem bytes) of an entry, compiled once."""
        if entry.name not in self._functions:
            compiled = build_module([entry], self.arch)
            module = self.ok(self.drv.cuModuleLoadData(compiled.cubin))
            self._modules.append(module)
            fn = self.ok(self.drv.cuModuleGetFunction(module, entry.name.encode()))
            smem = entry.dynamic_smem_bytes()
            if smem > 48 * 1024:
                attr = self.drv.CUfunction_attribute
                self.ok(
                    self.drv.cuFuncSetAttribute(
                        fn, attr.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem
                    )
                )
            self._functions[entry.name] = (fn, smem)
        return self._functions[entry.name]

    def launch(self, entry: EntryPoint, grid: int, params: list[bytes]) -> None:
        """Launch `grid` CTAs of 256 threads; `params` are the raw kernel params."""
        assert grid >= 1
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
                THREADS,
                1,
                1,
                smem,
                stream,
                ctypes.addressof(pointers),
                0,
            )
        )

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
            sync()
            self.ok(drv.cuMemFreeHost(host))


def i32(v: int) -> bytes:
    return struct.pack("<i", v)


def ptr(v: int) -> bytes:
    return struct.pack("<Q", v)


# --- one kernel call: its tensors, its expected result --------------------------


@dataclass
class Call:
    """A kernel call with its operands on the GPU and its torch result."""

    spec: KernelSpec
    params: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    outputs: list[str]
    expected: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_vb(self) -> int:
        return self.spec.virtual_blocks(self.params)

    @property
    def body(self) -> str:
        return self.spec.body(self.params)

    def args(self) -> bytes:
        pointers = {k: t.data_ptr() for k, t in self.tensors.items()}
        return pack_args(self.spec, self.params, pointers)

    def clear_outputs(self) -> None:
        for name in self.outputs:
            t = self.tensors[name]
            t.fill_(float("nan") if t.dtype.is_floating_point else -1)

    def result(self) -> dict[str, torch.Tensor]:
        sync()
        return {name: self.tensors[name].clone() for name in self.outputs}

    def where(self) -> str:
        return f"{self.spec.name} {self.body} {self.params}"


def _fan_in_scale(spec: KernelSpec, p: dict[str, Any]) -> dict[str, float]:
    """Weights ~ N(0, 1/fan_in), so outputs stay O(1) and 1e-4 is meaningful."""
    if spec.name == "linear":
        return {"w": p["k"] ** -0.5}
    if spec.name == "conv2d":
        return {"w": (p["c_in"] // p["groups"] * p["kh"] * p["kw"]) ** -0.5}
    return {}


def make_call(
    name: str,
    params: dict[str, Any],
    *,
    seed: int = 0,
    bias: bool = True,
    misalign: bool = False,
    alias: tuple[str, str] | None = None,
    scale: float = 1.0,
    fill: dict[str, Callable[[torch.Size, torch.Generator], torch.Tensor]]
    | None = None,
) -> Call:
    """Random operands for `name(params)` and the torch result.

    `misalign` offsets every buffer by one element (4-byte aligned only for
    float32), which forces the scalar paths; `alias=(input, output)` binds the
    output to the input's buffer (in-place kernels). `fill[operand](shape, gen)`
    gives an input's values instead of N(0, 1) (integer operands need one, e.g.
    embedding ids below the vocabulary size).
    """
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    shapes = spec.shapes(full)
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    offset = 1 if misalign else 0
    factors = _fan_in_scale(spec, full)
    tensors: dict[str, torch.Tensor] = {}
    outputs: list[str] = []
    fill = fill or {}
    for op in spec.operands:
        size = math.prod(shapes[op.name])
        dtype = TORCH_DTYPE[op.dtypes[0]]
        flat = torch.empty(size + 4, device=DEVICE, dtype=dtype)
        view = flat[offset : offset + size].view(shapes[op.name])
        if op.access == "read":
            if op.optional and not bias:
                continue
            if op.name in fill:
                view.copy_(fill[op.name](torch.Size(shapes[op.name]), gen))
            else:
                view.copy_(
                    torch.randn(shapes[op.name], generator=gen, device=DEVICE)
                    * scale
                    * factors.get(op.name, 1.0)
                )
        else:
            view.fill_(float("nan") if dtype.is_floating_point else -1)
            outputs.append(op.name)
        tensors[op.name] = view
    expected = {k: torch.empty_like(tensors[k]) for k in outputs}
    inputs = {k: t for k, t in tensors.items() if k not in outputs}
    spec.reference({**inputs, **expected}, full)
    if alias is not None:
        src, dst = alias
        tensors[dst] = tensors[src]
    sync()
    return Call(spec, full, tensors, outputs, expected)


def run_plain(gpu: Gpu, call: Call) -> dict[str, torch.Tensor]:
    gpu.launch(EntryPoint.plain(call.spec, call.params), call.n_vb, [call.args()])
    return call.result()


def run_preemptible(
    gpu: Gpu,
    call: Call,
    grid: int,
    counter: torch.Tensor,
    preempt: int,
) -> None:
    """One preemptible launch; `counter` (int32 on the GPU) is the next_vb."""
    entry = EntryPoint.preemptible(call.spec, call.params)
    gpu.launch(
        entry,
        grid,
        [call.args(), i32(call.n_vb), ptr(counter.data_ptr()), ptr(preempt)],
    )


def assert_matches_reference(call: Call, got: dict[str, torch.Tensor]) -> None:
    for name in call.outputs:
        want = call.expected[name]
        diff = (got[name] - want).abs().nan_to_num(float("inf")).max().item()
        assert torch.allclose(got[name], want, rtol=RTOL, atol=ATOL), (
            f"{call.where()}: output {name!r} differs from torch by up to {diff:.3g} "
            f"({PRECISION})"
        )


def assert_bitwise(call: Call, got: dict[str, torch.Tensor], want: dict, how: str):
    for name in call.outputs:
        a, b = got[name], want[name]
        if a.dtype.is_floating_point:  # bits, so NaN == NaN and -0 != +0
            a, b = a.view(torch.int8), b.view(torch.int8)
        same = torch.equal(a, b)
        assert same, f"{call.where()}: {how} is not bit-identical to the plain form"
