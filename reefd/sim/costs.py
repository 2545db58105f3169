"""Where the simulator's per-call costs come from: the `CostSource` protocol.

Owns turning a KernelGraph into one `padding.CallCost` per call (virtual
blocks, registers, shared memory, solo duration of one virtual block), three
ways:

- `RooflineCosts`: a static estimate from the kernel catalog. Virtual blocks,
  FLOPs, bytes moved and dynamic shared memory come from each call's spec;
  registers from `REGISTERS_PER_THREAD` (a placeholder table) unless compiled
  resources are handed in (`profiler.facts.Resources`, NVRTC, no GPU). One
  block runs on its slot's share of the GPU (a fair share of `sms x
  ctas_per_sm` slots): time = max(FLOPs / share of the FP32 peak, bytes /
  share of HBM bandwidth); the launch overhead of a kernel is spread over its
  waves. Every constant in `H100_ROOFLINE` is a placeholder until the profile
  store holds H100 measurements (docs/gpu-owed.md, item 7). A call is
  compute-bound (`CallCost.compute_bound`, read by the `orion` policy) when
  the FLOP term sets its time, i.e. its arithmetic intensity is above the
  roofline's attained ridge point (`RooflineConstants.ridge_flops_per_byte`).
- `StoreCosts`: durations measured by `reef-profile`, read through the profile
  store's read API (`profiler.store.Store.find_graph` / `task_profile`); a
  graph never profiled falls back to another source (the roofline).
- anything else with a `costs(graph)` method (tests hand-make tables).

Imports reefd's graph, kernel catalog, scheduler.padding and (lazily) the
profile store; no torch, no devices, no clocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reefd.graph import KernelGraph
from reefd.kernels import catalog
from reefd.kernels.spec import ITEMSIZE_BYTES
from reefd.scheduler.padding import CallCost, DeviceShape


class CostSource(Protocol):
    """Per-call costs of a graph, in call order."""

    def costs(self, graph: KernelGraph) -> tuple[CallCost, ...]: ...


@dataclass(frozen=True)
class RooflineConstants:
    """The machine a roofline estimate assumes. All placeholders."""

    fp32_flops_per_s: float
    """Peak FP32 (non-tensor) FLOP/s: H100 SXM, 132 SMs x 128 lanes x 2 x 1.98 GHz."""
    tensor_flops_per_s: float
    """Dense FP16/BF16 tensor-core peak, for the `_f16`/`_bf16` kernels."""
    hbm_bytes_per_s: float
    """HBM3 bandwidth of an H100 SXM."""
    compute_efficiency: float
    """Fraction of peak FLOP/s a library kernel reaches (placeholder)."""
    memory_efficiency: float
    """Fraction of HBM bandwidth a library kernel reaches (placeholder)."""
    launch_overhead_us: float
    """Per-kernel cost beyond its blocks (launch and ramp), microseconds."""

    def ridge_flops_per_byte(self, tensor: bool = False) -> float:
        """The arithmetic intensity (FLOP per byte moved) above which this
        roofline times a call by its FLOPs rather than its bytes: attained
        peak FLOP/s over attained HBM bandwidth. `H100_ROOFLINE`, FP32:
        66.9e12 x 0.5 / (3.35e12 x 0.8) = 12.5 FLOP/B (20.0 at the raw
        peaks); FP16/BF16 tensor cores: 185 (295 raw)."""
        peak = self.tensor_flops_per_s if tensor else self.fp32_flops_per_s
        attained_bw = self.hbm_bytes_per_s * self.memory_efficiency
        return peak * self.compute_efficiency / attained_bw


H100_ROOFLINE = RooflineConstants(
    fp32_flops_per_s=66.9e12,
    tensor_flops_per_s=989e12,
    hbm_bytes_per_s=3.35e12,
    compute_efficiency=0.5,
    memory_efficiency=0.8,
    launch_overhead_us=2.0,
)

GEMM_KERNELS = frozenset(
    {
        "conv2d",
        "conv2d_f16",
        "conv2d_bf16",
        "linear",
        "linear_f16",
        "linear_bf16",
        "bmm",
        "bmm_f16",
        "bmm_bf16",
    }
)
REGISTERS_PER_THREAD: Mapping[str, int] = {name: 128 for name in GEMM_KERNELS}
"""Placeholder registers per thread by kernel: tiled GEMM/conv bodies 128
(2 CTAs of 256 threads per SM on sm_90), everything else `DEFAULT_REGISTERS`."""
DEFAULT_REGISTERS = 32
"""Placeholder for elementwise, pooling, gather and normalisation bodies."""

Resolve = Callable[[Any, Mapping[str, Any], str], Any]
"""`profiler.facts.Resources.of(spec, params, form)`: compiled registers and
shared memory of an entry point, or None."""


def touched_bytes(
    spec: Any, params: Mapping[str, Any], bound: Mapping[str, str]
) -> int:
    """Bytes a call reads and writes: the spec's operand extents, except where
    an extent spans far more than the kernel touches (a strided copy's extent
    runs from the buffer's start to its view's end; an embedding reads only
    the table rows it gathers): there, twice the bytes written."""
    extents = spec.extents_bytes(params, bound)
    if spec.name == "strided_copy":
        return 2 * math.prod(params["shape"]) * ITEMSIZE_BYTES[bound["y"]]
    if spec.name == "embedding":
        return extents.get("ids", 0) + 2 * extents["y"]
    return sum(extents.values())


class RooflineCosts:
    """Static per-call costs from the catalog and an H100-like roofline.

    `resources`: a `profiler.facts.Resources` (or anything with its `of`
    method) giving compiled registers and shared memory; None uses the
    placeholder register table and the spec's dynamic shared memory.
    Results are cached per graph object.
    """

    def __init__(
        self,
        shape: DeviceShape,
        constants: RooflineConstants = H100_ROOFLINE,
        resources: Any | None = None,
    ) -> None:
        self._shape = shape
        self._k = constants
        self._resources = resources
        self._cache: dict[int, tuple[KernelGraph, Any, tuple[CallCost, ...]]] = {}

    def costs(self, graph: KernelGraph) -> tuple[CallCost, ...]:
        hit = self._cache.get(id(graph))
        if hit is not None and hit[0] is graph:
            return hit[1]
        dtypes = {b.name: b.dtype for b in graph.buffers}
        out = tuple(self._call_cost(call, dtypes) for call in graph.calls)
        self._cache[id(graph)] = (graph, out)
        return out

    def _call_cost(self, call: Any, dtypes: Mapping[str, str]) -> CallCost:
        spec = catalog.get(call.kernel)
        params = spec.with_defaults(call.params)
        n_vb = max(1, spec.virtual_blocks(params))
        registers, smem = self._resources_of(spec, params)
        bound = {op: dtypes[buf] for op, buf in call.args.items()}
        flops = float(spec.flops(params))
        moved = float(touched_bytes(spec, params, bound))
        slots = self._shape.sms * max(1, self._shape.ctas_per_sm(registers, smem))
        tensor = spec.name.endswith(("_f16", "_bf16"))
        peak = self._k.tensor_flops_per_s if tensor else self._k.fp32_flops_per_s
        flops_per_slot = peak * self._k.compute_efficiency / slots
        bytes_per_slot = self._k.hbm_bytes_per_s * self._k.memory_efficiency / slots
        flop_us = 1e6 * flops / n_vb / flops_per_slot
        byte_us = 1e6 * moved / n_vb / bytes_per_slot
        waves = math.ceil(n_vb / slots)
        vb_us = max(flop_us, byte_us) + self._k.launch_overhead_us / waves
        return CallCost(
            n_vb=n_vb,
            registers=registers,
            smem_bytes=smem,
            vb_us=vb_us,
            # The FLOP term sets the time: intensity above the ridge point.
            compute_bound=flop_us > byte_us,
        )

    def _resources_of(self, spec: Any, params: Mapping[str, Any]) -> tuple[int, int]:
        if self._resources is not None:
            found = self._resources.of(spec, params, "preemptible")
            if found is not None:
                return found.registers, found.smem_bytes
        registers = REGISTERS_PER_THREAD.get(spec.name, DEFAULT_REGISTERS)
        return registers, spec.dynamic_smem_bytes(params)


class StoreCosts:
    """Per-call costs from solo profiles in the SQLite profile store.

    A graph is found by its content hash (`profiler.identity.graph_key`) and
    the latest solo measurement of that model at that batch on `backend`;
    `vb_us` is the call's median duration over its waves (so a solo call takes
    its measured median on the simulator). Registers and shared memory are the
    profile's where it recorded them, else the fallback's; the compute/memory
    class is always the fallback's (the same calls' FLOPs and bytes).
    A graph that was never profiled gets `fallback.costs(graph)`; `sources`
    records which graph names came from where.
    """

    def __init__(
        self,
        store: Any,
        shape: DeviceShape,
        fallback: CostSource,
        backend: str | None = "cuda",
    ) -> None:
        self._store = store
        self._shape = shape
        self._fallback = fallback
        self._backend = backend
        self._cache: dict[int, tuple[KernelGraph, tuple[CallCost, ...]]] = {}
        self.sources: dict[str, str] = {}

    @classmethod
    def open(
        cls,
        path: str | None,
        shape: DeviceShape,
        fallback: CostSource,
        backend: str | None = "cuda",
    ) -> StoreCosts:
        """Open the store at `path` (default: the daemon's state directory)."""
        from reefd.profiler.store import Store

        return cls(Store.open(path, create=False), shape, fallback, backend)

    def costs(self, graph: KernelGraph) -> tuple[CallCost, ...]:
        measured, base = self._lookup(graph)
        return measured or base

    def profiled(self, graph: KernelGraph) -> tuple[CallCost, ...] | None:
        """The costs if this graph was profiled, else None (no fallback:
        what a real device pads with must come from measurements)."""
        return self._lookup(graph)[0]

    def _lookup(
        self, graph: KernelGraph
    ) -> tuple[tuple[CallCost, ...] | None, tuple[CallCost, ...]]:
        hit = self._cache.get(id(graph))
        if hit is not None and hit[0] is graph:
            return hit[1], hit[2]
        base = self._fallback.costs(graph)
        measured = self._measured(graph, base)
        self.sources[graph.name] = "profile" if measured else "fallback"
        self._cache[id(graph)] = (graph, measured, base)
        return measured, base

    def _measured(
        self, graph: KernelGraph, base: tuple[CallCost, ...]
    ) -> tuple[CallCost, ...] | None:
        from reefd.profiler.identity import graph_key

        found = self._store.find_graph(graph_key(graph))
        if found is None:
            return None
        model_key, batch = found
        task = self._store.task_profile(model_key, batch, backend=self._backend)
        if task is None or len(task.calls) != len(graph.calls):
            return None
        out = []
        for call, guess in zip(task.calls, base, strict=True):
            facts = call.facts
            registers = facts.registers or guess.registers
            smem = (
                facts.smem_bytes if facts.smem_bytes is not None else guess.smem_bytes
            )
            n_vb = max(1, facts.n_vb)
            cps = max(1, self._shape.ctas_per_sm(registers, smem))
            waves = math.ceil(n_vb / (self._shape.sms * cps))
            vb_us = call.duration.median_us / waves
            out.append(CallCost(n_vb, registers, smem, vb_us, guess.compute_bound))
        return tuple(out)


def solo_duration_us(costs: tuple[CallCost, ...], shape: DeviceShape) -> float:
    """A task's predicted solo duration: its calls one after another, each in
    whole waves (what the simulator gives a task alone on the device)."""
    total = 0.0
    for cost in costs:
        slots = shape.sms * max(1, shape.ctas_per_sm(cost.registers, cost.smem_bytes))
        total += math.ceil(cost.n_vb / slots) * cost.vb_us
    return total
