"""The profile records: what one measurement produces and the store keeps.

Owns the frozen dataclasses passed between the measuring code and the store,
and returned by the store's read API: the environment of a run, the static and
measured facts of one kernel call, one task (a whole model at one batch size),
GPU counter readings, and one co-run pair; and the format of stored dates
(ISO 8601, UTC, seconds).

Imports the standard library and this package's stats module only.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reefd.profiler.stats import Ratio, Stats


def utc_now() -> str:
    """Now, as every stored date is written: '2025-01-31T12:00:00+00:00'."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Environment:
    """Where and with what a run measured; every row of the run carries it."""

    backend: str
    """'cpu' (torch references on the CPU: a stand-in, not GPU figures) or 'cuda'."""
    device_name: str
    """The GPU's name, or the CPU model on the cpu backend."""
    torch_version: str
    reefd_version: str
    python_version: str
    hostname: str
    cpu_model: str
    cpu_count: int
    """Logical CPUs the host has."""
    torch_threads: int
    """torch intra-op threads the measurement ran with."""
    resources_arch: str | None
    """GPU arch registers, shared memory and CTAs/SM are compiled for (None:
    not compiled)."""
    driver_version: str | None = None
    cuda_version: str | None = None
    """CUDA runtime torch was built with (None on a CPU-only torch)."""
    nvml_version: str | None = None
    sm_count: int | None = None
    sm_clock_max_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True)
class CallFacts:
    """What is known about one kernel call before it runs."""

    call_index: int
    kernel: str
    variant: str
    """The body the call runs, e.g. 'conv2d_body<64, 64, 8, 1>'."""
    form: str
    """Entry point whose resources are given (and timed on cuda): plain or
    preemptible."""
    params: Mapping[str, Any]
    """Params with defaults filled in; `ints` params as lists."""
    n_vb: int
    """Virtual blocks (CTAs of the plain form)."""
    flops: int
    bytes_moved: int
    """Bytes of every bound operand's extent (reads plus writes)."""
    registers: int | None = None
    """Per thread, from ptxas (None: not compiled, or no CUDA body)."""
    smem_bytes: int | None = None
    """Static plus dynamic shared memory per CTA."""
    ctas_per_sm: int | None = None
    """Resident CTAs per SM for `resources_arch`'s limits."""

    @property
    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)


@dataclass(frozen=True)
class CallProfile:
    """One call's facts and its solo duration."""

    facts: CallFacts
    duration: Stats


@dataclass(frozen=True)
class GpuReadings:
    """NVML readings over a window of back-to-back task runs (None: unavailable)."""

    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    power_w: float | None = None
    """Mean board power over the window (from the energy counter)."""
    sm_occupancy_pct: float | None = None
    """GPM: resident warps over the maximum, averaged (Hopper and later)."""
    dram_bw_util_pct: float | None = None
    """GPM: DRAM bandwidth used over peak (Hopper and later)."""


@dataclass(frozen=True)
class ModelIdentity:
    """A model: content hash of its graph at batch 1, plus a human name."""

    model_key: str
    name: str
    source: str
    """'zoo:<name>' or 'file:<path>:<factory>'."""
    overrides: Mapping[str, Any]
    """Zoo overrides (reduced variants); empty for a full-size model."""


@dataclass(frozen=True)
class TaskProfile:
    """A whole model at one batch size, run solo: task and per-call durations."""

    model: ModelIdentity
    batch: int
    graph_key: str
    """Content hash of the graph at this batch (what the daemon holds)."""
    duration: Stats
    samples_us: tuple[float, ...]
    calls: tuple[CallProfile, ...]
    warmup: int
    weight_bytes: int
    scratch_bytes: int
    gpu: GpuReadings = GpuReadings()
    measured_at: str = ""
    """ISO 8601 UTC time the measurement finished."""

    @property
    def flops(self) -> int:
        return sum(c.facts.flops for c in self.calls)

    @property
    def bytes_moved(self) -> int:
        return sum(c.facts.bytes_moved for c in self.calls)


@dataclass(frozen=True)
class PairProfile:
    """An RT task beside a BE task: both alone and together."""

    rt: ModelIdentity
    rt_batch: int
    be: ModelIdentity
    be_batch: int
    method: str
    """How the two ran at once (worker processes on the CPU, streams on a GPU)."""
    rt_alone: Stats
    rt_together: Stats
    be_alone: Stats
    be_together: Stats
    rt_slowdown: Ratio
    """RT together / RT alone (medians), with its bootstrap interval."""
    be_slowdown: Ratio
    samples_us: Mapping[str, tuple[float, ...]]
    """The raw durations: rt_alone, rt_together, be_alone, be_together."""
    measured_at: str = ""
