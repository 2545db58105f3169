"""The Device interface every backend implements, and the launch record.

Compiling never needs a device; loading and launching always do. A device keeps
one host queue per stream, runs launches asynchronously, and reports Completions
through `poll()`, calling the waker it was given whenever new ones are ready.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reefd.graph import KernelGraph
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.plan import Completion, Form, Stream

if TYPE_CHECKING:
    from reefd.batching import BatchRule


@dataclass(frozen=True)
class PadLaunch:
    """The BE slice of a padded launch: up to `budget_vbs` blocks of a BE call."""

    task_id: int
    call_index: int
    budget_vbs: int
    model: Any
    memory: Any


@dataclass(frozen=True)
class DeviceLaunch:
    """One launch for a device's host queue. A PADDED launch also carries
    `pad` and yields two Completions: its own and the BE call's (OK when the
    BE call's last block ran, else PREEMPTED with its counter kept)."""

    task_id: int
    call_index: int
    stream: Stream
    form: Form
    model: Any
    memory: Any
    pad: PadLaunch | None = None
    n_calls: int = 1
    """Calls `call_index .. call_index + n_calls - 1` in order (only on a
    device whose `takes_runs` is True; a PADDED launch is one call)."""


class Device(ABC):
    name: str = "device"
    takes_runs: bool = False
    """Whether `launch` accepts runs of calls (`DeviceLaunch.n_calls` > 1) and
    may report them back in pieces (`Completion.n_calls`); otherwise the
    executor hands it one launch per call."""

    @abstractmethod
    def describe(self) -> str:
        """One line: what this device is (name, versions, threads)."""

    @abstractmethod
    def start(self, waker: Callable[[], None]) -> None:
        """Acquire the device; `waker()` is called whenever completions are ready."""

    def prepare(self, graph: KernelGraph, batch: BatchRule | None = None) -> Any:
        """Compile what `load` will need; None when there is nothing to compile.

        Called on the server's register worker, never on the engine thread: it
        must not touch device state and must be thread-safe. `batch` is the
        model's batch rule (compile for every batch size it serves). What it
        returns reaches `load` as `compiled=` (through the RegisterModel event).
        """
        return None

    @abstractmethod
    def load(
        self,
        graph: KernelGraph,
        weights: Mapping[str, Any],
        digests: Mapping[str, str],
        compiled: Any = None,
    ) -> Any:
        """Copy a validated graph's weights to the device; returns a model handle.

        `weights` maps weight buffer names to bytes-like objects of exact size,
        `digests` maps them to content digests (`weight_pool.digest`): weights
        with equal content share one device copy across models. `compiled` is
        what `prepare` returned for this graph (None if it compiled nothing).
        """

    def shape(self) -> DeviceShape | None:
        """SM count and occupancy rule for padding; None where the device
        cannot pad (or before `start` on a device that learns it there)."""
        return None

    def call_costs(self, memory: Any) -> tuple[CallCost, ...] | None:
        """Per-call costs of the task in `memory` (blocks, resources, block
        time) for padding; None where they are not known."""
        return None

    @abstractmethod
    def weight_stats(self) -> dict[str, int]:
        """The weight pool's counters (`WeightPool.stats`)."""

    @abstractmethod
    def unload(self, model: Any) -> None: ...

    @abstractmethod
    def alloc(
        self, model: Any, inputs: list[Any], graph: KernelGraph | None = None
    ) -> Any:
        """Allocate one task's buffers and copy its inputs (graph input order).

        `graph` is the model's graph at this request's batch size when it serves
        several (same calls and weights, other sizes); None means the loaded one.
        """

    @abstractmethod
    def outputs(self, memory: Any) -> list[Any]:
        """The task's outputs in graph output order, as buffer-protocol objects."""

    @abstractmethod
    def free(self, memory: Any) -> None: ...

    @abstractmethod
    def launch(self, launch: DeviceLaunch) -> None:
        """Append a launch to its stream's host queue."""

    @abstractmethod
    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        """Remove every launch still waiting in `stream`'s host queue (newest last)."""

    @abstractmethod
    def set_preempt(self, flag: bool) -> None:
        """Raise or lower the preempt flag read by running preemptible kernels."""

    @abstractmethod
    def poll(self) -> list[Completion]:
        """Completions since the last poll, in completion order."""

    @abstractmethod
    def busy(self) -> bool:
        """Whether any launch is queued or running."""

    @abstractmethod
    def close(self) -> None: ...
