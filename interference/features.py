"""Interference features: per kernel call, per task, per RT/BE pair; quantised.

Owns the feature lists (each named once, here) and the pure functions that
compute them from the profile records:

- call features (`CALL_FEATURES`): FLOPs, bytes moved, arithmetic intensity,
  CTAs, threads, registers per thread, shared memory per CTA, CTAs per SM, the
  share of the device's CTA slots one wave fills (`sm_share`, needs the SM
  count), and the solo duration;
- task features (`TASK_FEATURES`): totals (FLOPs, bytes, calls), the call
  features averaged with each call's solo duration as its weight (what the
  task spends its time in), the share of time in compute-bound calls
  (intensity at or above the ridge point), the solo task duration, the achieved
  compute rate and bandwidth, and the NVML/GPM readings where the store has
  them (NaN where not: the cpu backend, pre-Hopper GPUs);
- pair features (`PAIR_FEATURES`): both sides' task features (`rt_*`, `be_*`),
  sums and products of their bandwidth and compute-rate terms, the SM share
  they ask for together and the RT side's share of their CTAs, the duration
  ratio and how alike their compute-bound shares are.

Quantisation maps task features to bins (magnitudes on a log grid of
`bins_per_decade` bins per decade of 1 + x, fractions and percentages on a
linear grid): the trained model sees quantised task features only, so a
lookup table over bins (model.py) is the model itself, not an approximation.

Pure: imports the standard library, numpy, reefd.errors and
reefd.profiler.records only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from reefd.errors import ConfigError
from reefd.profiler.records import CallProfile, TaskProfile

Features = Mapping[str, float]
"""Feature name -> value (NaN: not measured)."""
Code = tuple[int | None, ...]
"""A task's quantised features as bin indices, in TASK_FEATURES order (None:
not measured)."""
Kind = Literal["mag", "frac", "pct"]

THREADS_PER_CTA = 256
"""Every reefd kernel runs 256 threads per CTA (kernels/wrappers.py
CTA_THREADS; a test checks they agree)."""
NAN = float("nan")

CALL_FEATURES: tuple[str, ...] = (
    "flops",
    "bytes",
    "intensity_flops_per_byte",
    "ctas",
    "threads",
    "registers_per_thread",
    "smem_bytes_per_cta",
    "ctas_per_sm",
    "sm_share",
    "duration_us",
)

TASK_FEATURES: dict[str, Kind] = {
    "flops": "mag",
    "bytes": "mag",
    "intensity_flops_per_byte": "mag",
    "n_calls": "mag",
    "ctas": "mag",
    "threads": "mag",
    "registers_per_thread": "mag",
    "smem_bytes_per_cta": "mag",
    "ctas_per_sm": "mag",
    "sm_share": "frac",
    "compute_bound_frac": "frac",
    "duration_us": "mag",
    "gflop_per_s": "mag",
    "gb_per_s": "mag",
    "sm_occupancy_pct": "pct",
    "dram_bw_util_pct": "pct",
    "power_w": "mag",
}
"""Task feature -> how it is quantised: 'mag' on a log grid of 1 + x, 'frac'
(0..1) and 'pct' (0..100) on linear grids."""

_TIME_WEIGHTED = (
    "ctas",
    "threads",
    "registers_per_thread",
    "smem_bytes_per_cta",
    "ctas_per_sm",
    "sm_share",
)
"""Call features a task averages over its calls, weighted by solo time."""

_DERIVED: tuple[str, ...] = (
    "gb_per_s_sum",
    "gb_per_s_product",
    "gflop_per_s_sum",
    "gflop_per_s_product",
    "dram_bw_util_pct_sum",
    "dram_bw_util_pct_product",
    "sm_share_sum",
    "sm_share_product",
    "rt_ctas_share",
    "duration_ratio",
    "compute_bound_match",
)

PAIR_FEATURES: tuple[str, ...] = (
    *(f"rt_{name}" for name in TASK_FEATURES),
    *(f"be_{name}" for name in TASK_FEATURES),
    *_DERIVED,
)
"""The columns of the model's input, in order."""


@dataclass(frozen=True)
class DeviceFacts:
    """The device a dataset was measured on."""

    backend: str
    """'cpu' (process co-runs: a stand-in) or 'cuda'."""
    device_name: str
    sm_count: int | None = None
    """SMs of the GPU (None on the cpu backend): needed for `sm_share`."""

    @property
    def label(self) -> str:
        return f"{self.backend}: {self.device_name}"


@dataclass(frozen=True)
class FeatureConfig:
    """How features are computed and quantised (stored in the model file)."""

    ridge_flops_per_byte: float = 20.0
    """Arithmetic intensity (FLOPs per byte moved) at and above which a call
    counts as compute-bound: the roofline ridge point. 20 is an H100 SXM's
    fp32 SIMT peak over its HBM bandwidth (67 TFLOP/s / 3.35 TB/s)."""
    bins_per_decade: int = 16
    """Log-grid bins per decade of 1 + x for magnitudes (16: neighbouring bins
    15 % apart, a value at most 7.5 % from its bin's centre)."""
    fraction_step: float = 0.05
    """Bin width of 0..1 features."""
    pct_step: float = 2.5
    """Bin width of 0..100 features (percent)."""

    def check(self) -> FeatureConfig:
        if not self.ridge_flops_per_byte > 0:
            raise ConfigError(
                f"ridge_flops_per_byte {self.ridge_flops_per_byte}: must be > 0"
            )
        if self.bins_per_decade < 1:
            raise ConfigError(f"bins_per_decade {self.bins_per_decade}: must be >= 1")
        if not (self.fraction_step > 0 and self.pct_step > 0):
            raise ConfigError(
                f"fraction_step {self.fraction_step}, pct_step {self.pct_step}: "
                "both must be > 0"
            )
        return self


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else NAN


def _opt(value: float | None) -> float:
    return NAN if value is None else float(value)


def call_features(call: CallProfile, device: DeviceFacts) -> dict[str, float]:
    """One kernel call's static facts and solo duration (CALL_FEATURES)."""
    f = call.facts
    slots = (
        device.sm_count * f.ctas_per_sm if device.sm_count and f.ctas_per_sm else None
    )
    return {
        "flops": float(f.flops),
        "bytes": float(f.bytes_moved),
        "intensity_flops_per_byte": _ratio(f.flops, f.bytes_moved),
        "ctas": float(f.n_vb),
        "threads": float(f.n_vb * THREADS_PER_CTA),
        "registers_per_thread": _opt(f.registers),
        "smem_bytes_per_cta": _opt(f.smem_bytes),
        "ctas_per_sm": _opt(f.ctas_per_sm),
        "sm_share": min(1.0, f.n_vb / slots) if slots else NAN,
        "duration_us": float(call.duration.median_us),
    }


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """Mean of the non-NaN `values` weighted by `weights` (equal weights where
    they sum to 0); NaN when no value is known."""
    known = [(v, w) for v, w in zip(values, weights, strict=True) if v == v]
    if not known:
        return NAN
    total = sum(w for _, w in known)
    if total <= 0:
        return sum(v for v, _ in known) / len(known)
    return sum(v * w for v, w in known) / total


def task_features(
    task: TaskProfile, device: DeviceFacts, config: FeatureConfig
) -> dict[str, float]:
    """A task's features (TASK_FEATURES) from its solo profile."""
    calls = [call_features(c, device) for c in task.calls]
    weights = [c["duration_us"] for c in calls]
    flops, moved = float(task.flops), float(task.bytes_moved)
    duration_us = float(task.duration.median_us)
    bound = [
        1.0 if c["intensity_flops_per_byte"] >= config.ridge_flops_per_byte else 0.0
        for c in calls
    ]
    out = {
        "flops": flops,
        "bytes": moved,
        "intensity_flops_per_byte": _ratio(flops, moved),
        "n_calls": float(len(calls)),
        **{
            name: weighted_mean([c[name] for c in calls], weights)
            for name in _TIME_WEIGHTED
        },
        "compute_bound_frac": weighted_mean(bound, weights),
        "duration_us": duration_us,
        "gflop_per_s": _ratio(flops, duration_us * 1e3),
        "gb_per_s": _ratio(moved, duration_us * 1e3),
        "sm_occupancy_pct": _opt(task.gpu.sm_occupancy_pct),
        "dram_bw_util_pct": _opt(task.gpu.dram_bw_util_pct),
        "power_w": _opt(task.gpu.power_w),
    }
    return {name: out[name] for name in TASK_FEATURES}


def _bin(value: float, kind: Kind, config: FeatureConfig) -> tuple[int | None, float]:
    if value != value:
        return None, NAN
    if kind == "mag":
        t = math.log10(1.0 + max(0.0, value))
        i = math.floor(t * config.bins_per_decade + 0.5)
        return i, 10.0 ** (i / config.bins_per_decade) - 1.0
    step = config.fraction_step if kind == "frac" else config.pct_step
    i = math.floor(value / step + 0.5)
    return i, i * step


def quantise(
    features: Features, config: FeatureConfig
) -> tuple[Code, dict[str, float]]:
    """A task's features binned: (bin indices, each bin's centre value)."""
    code: list[int | None] = []
    values: dict[str, float] = {}
    for name, kind in TASK_FEATURES.items():
        index, centre = _bin(features[name], kind, config)
        code.append(index)
        values[name] = centre
    return tuple(code), values


def pair_features(rt: Features, be: Features) -> dict[str, float]:
    """The features of RT task `rt` beside BE task `be` (PAIR_FEATURES)."""
    out = {f"rt_{n}": rt[n] for n in TASK_FEATURES}
    out.update({f"be_{n}": be[n] for n in TASK_FEATURES})
    for term in ("gb_per_s", "gflop_per_s", "dram_bw_util_pct", "sm_share"):
        out[f"{term}_sum"] = rt[term] + be[term]
        out[f"{term}_product"] = rt[term] * be[term]
    out["rt_ctas_share"] = _ratio(rt["ctas"], rt["ctas"] + be["ctas"])
    out["duration_ratio"] = _ratio(rt["duration_us"], be["duration_us"])
    a, b = rt["compute_bound_frac"], be["compute_bound_frac"]
    out["compute_bound_match"] = a * b + (1.0 - a) * (1.0 - b)
    return {name: out[name] for name in PAIR_FEATURES}


def pair_matrix(pairs: Sequence[tuple[Features, Features]]) -> np.ndarray:
    """One row of PAIR_FEATURES per (rt, be) pair of task features."""
    out = np.empty((len(pairs), len(PAIR_FEATURES)), dtype=np.float64)
    for i, (rt, be) in enumerate(pairs):
        row = pair_features(rt, be)
        out[i] = [row[name] for name in PAIR_FEATURES]
    return out
