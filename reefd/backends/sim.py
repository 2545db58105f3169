"""The sim backend: a `Device` whose kernels run on a simulated GPU's clock.

Owns the Device side of the simulator: models (a graph plus its per-call costs
from a `CostSource`), task memory (no buffers: the per-call counters the
preemptible and padded forms claim from, and blocks executed per call), the
weight pool's bookkeeping, and virtual time (`now_us`, `next_event_ns`,
`advance`). The timing model itself is `reefd.sim.gpu.SimGpu`.

Outputs are not computed: `outputs()` returns zero-filled buffers of the right
sizes. The simulator is for timing, not results.

Virtual time does not move by itself: whoever drives the device
(`reefd.sim.runner.simulate`) calls `advance`. The clock is integer
nanoseconds inside; `now_us` and Completion times are float microseconds (the
Completion fields are annotated int for the real backends; the simulator keeps
sub-microsecond resolution there on purpose: block times are often below 1 us).

Imports reefd's graph, scheduler records, weight pool and the sim package; no
torch, no CUDA, no threads, no wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reefd.backends.device import Device, DeviceLaunch
from reefd.graph import KernelGraph
from reefd.profiler.identity import graph_key
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.plan import Completion, Stream
from reefd.sim.costs import CostSource, RooflineCosts
from reefd.sim.gpu import SimGpu
from reefd.sim.records import SimTaskMemory, Slowdown, no_slowdown
from reefd.sim.shapes import h100_shape
from reefd.weight_pool import WeightKey, WeightPool


@dataclass
class SimModel:
    """A loaded model: its graph, per-call costs and weight-pool keys."""

    graph: KernelGraph
    costs: tuple[CallCost, ...]
    keys: list[WeightKey]
    profile_key: str = ""
    """The graph's key in profiles (for the co-run slowdown hook)."""
    variants: dict[int, tuple[KernelGraph, tuple[CallCost, ...], str]] = field(
        default_factory=dict
    )
    """Other batch sizes' graphs by identity, with their costs and keys: costed
    and hashed once, not per request (and one cost table per graph keeps the
    scheduler's and simulator's per-table memos useful)."""


class SimDevice(Device):
    name = "sim"
    takes_runs = True

    def __init__(
        self,
        shape: DeviceShape | None = None,
        costs: CostSource | None = None,
        slowdown: Slowdown = no_slowdown,
        aggregate_waves: bool = True,
    ) -> None:
        self._shape = shape or h100_shape()
        self.cost_source = costs or RooflineCosts(self._shape)
        self.gpu = SimGpu(self._shape, slowdown, aggregate_waves)
        self._pool: WeightPool[None] = WeightPool()
        self._waker: Callable[[], None] = lambda: None
        self._slowdown_name = getattr(slowdown, "__name__", type(slowdown).__name__)

    def describe(self) -> str:
        return (
            f"sim ({self._shape.sms} SMs, costs {type(self.cost_source).__name__}, "
            f"slowdown {self._slowdown_name}, virtual clock)"
        )

    def start(self, waker: Callable[[], None]) -> None:
        self._waker = waker

    # ---- memory -------------------------------------------------------------

    def load(
        self,
        graph: KernelGraph,
        weights: Mapping[str, Any],
        digests: Mapping[str, str],
        compiled: Any = None,
    ) -> SimModel:
        keys = []
        for buf in graph.weights:
            digest = digests.get(buf.name, f"{graph.name}/{buf.name}")
            key = (digest, buf.dtype, buf.nbytes)
            self._pool.acquire(key, lambda: None)
            keys.append(key)
        return SimModel(graph, self.cost_source.costs(graph), keys, graph_key(graph))

    def unload(self, model: SimModel) -> None:
        for key in model.keys:
            self._pool.release(key)
        model.keys.clear()

    def shape(self) -> DeviceShape:
        return self._shape

    def call_costs(self, memory: SimTaskMemory) -> tuple[CallCost, ...]:
        return memory.costs

    def weight_stats(self) -> dict[str, int]:
        return self._pool.stats()

    def alloc(
        self, model: SimModel, inputs: list[Any], graph: KernelGraph | None = None
    ) -> SimTaskMemory:
        if graph is None or graph is model.graph:
            return SimTaskMemory(
                model.graph, model.costs, profile_key=model.profile_key
            )
        hit = model.variants.get(id(graph))
        if hit is None or hit[0] is not graph:
            hit = (graph, self.cost_source.costs(graph), graph_key(graph))
            model.variants[id(graph)] = hit
        return SimTaskMemory(graph, hit[1], profile_key=hit[2])

    def outputs(self, memory: SimTaskMemory) -> list[Any]:
        return [bytearray(b.nbytes) for b in memory.graph.outputs]

    def free(self, memory: SimTaskMemory) -> None:
        """Nothing to release: task memory holds no device buffers."""

    # ---- launches -----------------------------------------------------------

    def launch(self, launch: DeviceLaunch) -> None:
        self.gpu.launch(launch)

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        return self.gpu.drop_queued(stream)

    def set_preempt(self, flag: bool) -> None:
        self.gpu.set_preempt(flag)

    def poll(self) -> list[Completion]:
        return self.gpu.poll()

    def busy(self) -> bool:
        return self.gpu.busy()

    def close(self) -> None:
        pass

    # ---- virtual time -------------------------------------------------------

    @property
    def now_us(self) -> float:
        return self.gpu.now_ns / 1000

    @property
    def now_ns(self) -> int:
        return self.gpu.now_ns

    def next_event_ns(self) -> int | None:
        """When the device next has something to report or to do (None: idle)."""
        return self.gpu.next_event_ns()

    def advance(self, until_ns: int) -> None:
        """Run the device up to `until_ns`; wakes the driver if completions
        are ready."""
        self.gpu.advance(until_ns)
        if self.gpu.has_completions:
            self._waker()
