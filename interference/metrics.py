"""The evaluation metrics, as pure functions of predicted and measured values.

Owns the arithmetic of every number in `reef-profile evaluate`'s table; the
definitions (which evaluate.py's docstring states for readers of the table)
are, for predicted RT slowdowns p and measured ones m over held-out pairs:

- MAPE: 100 * mean(|p - m| / m), in percent;
- p90 absolute error: the 90th percentile (linear interpolation) of |p - m|,
  in slowdown units (0.05 = five points of slowdown);
- Kendall tau: per RT task ("group") with at least 3 BE partners, tau-b
  between p and m over its partners, averaged over those groups; a group
  whose predictions are all tied has tau 0 (a ranking that says nothing);
- top-1 regret: per group with at least 2 partners, the measured slowdown of
  the partner ranked best (lowest p; ties share the choice, so their mean m
  is taken) minus the lowest m, averaged over those groups;
- false-safe rate: of the pairs predicted safe (p <= threshold), the share
  measured unsafe (m > threshold); 0 when none is predicted safe, which is
  why the share predicted safe is reported beside it;
- noise floor: per pair measured k >= 2 times, the mean over repeats of
  |s_i - mean(other repeats)| / s_i (how well one measurement predicts
  another); per pair measured once, half its 90 % bootstrap interval over its
  value. Its "MAPE" is 100 * the mean over pairs; its "p90 absolute error" the
  90th percentile of the same in slowdown units.

Imports numpy and scipy only.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

MIN_TAU_PARTNERS = 3
MIN_REGRET_PARTNERS = 2


def mape_pct(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error of `predicted` against `measured`."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    return float(100.0 * np.mean(np.abs(p - m) / m))


def p90_abs_error(predicted: np.ndarray, measured: np.ndarray) -> float:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    return float(np.percentile(np.abs(p - m), 90))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two rankings; 0 where either side is all tied."""
    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = kendalltau(x, y, variant="b")[0]
    return 0.0 if tau != tau else float(tau)


def _by_group(
    predicted: np.ndarray, measured: np.ndarray, groups: Sequence[Hashable]
) -> list[tuple[np.ndarray, np.ndarray]]:
    index: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        index[g].append(i)
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    return [(p[ix], m[ix]) for ix in index.values()]


def mean_kendall_tau(
    predicted: np.ndarray, measured: np.ndarray, groups: Sequence[Hashable]
) -> tuple[float, int]:
    """(mean tau-b over groups with >= 3 partners, how many); NaN if none."""
    taus = [
        kendall_tau_b(p, m)
        for p, m in _by_group(predicted, measured, groups)
        if len(p) >= MIN_TAU_PARTNERS
    ]
    return (float(np.mean(taus)) if taus else float("nan")), len(taus)


def top1_regret(
    predicted: np.ndarray, measured: np.ndarray, groups: Sequence[Hashable]
) -> tuple[float, int]:
    """(mean regret of picking the lowest predicted partner, groups counted)."""
    regrets = []
    for p, m in _by_group(predicted, measured, groups):
        if len(p) < MIN_REGRET_PARTNERS:
            continue
        chosen = m[np.isclose(p, p.min(), rtol=1e-12, atol=0.0)]
        regrets.append(float(chosen.mean() - m.min()))
    return (float(np.mean(regrets)) if regrets else float("nan")), len(regrets)


def false_safe(
    predicted: np.ndarray, measured: np.ndarray, threshold: float
) -> tuple[float, int]:
    """(false-safe rate at `threshold`, pairs predicted safe)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    safe = p <= threshold
    n_safe = int(safe.sum())
    if n_safe == 0:
        return 0.0, 0
    return float(np.sum(safe & (m > threshold)) / n_safe), n_safe


class Measured(Protocol):
    rt_slowdown: float
    rt_noise_rel: float
    repeats: tuple[float, ...]


@dataclass(frozen=True)
class NoiseFloor:
    mape_pct: float
    p90_abs_error: float
    repeated_pairs: int
    """Pairs measured more than once (the rest use their bootstrap interval)."""
    pairs: int

    @property
    def source(self) -> str:
        once = self.pairs - self.repeated_pairs
        parts = []
        if self.repeated_pairs:
            parts.append(f"repeats of {self.repeated_pairs} pairs")
        if once:
            parts.append(f"bootstrap intervals of {once} pairs")
        return " + ".join(parts)


def noise_floor(rows: Sequence[Measured]) -> NoiseFloor:
    """How far one measurement of a pair is from another (see the docstring)."""
    rel, absolute, repeated = [], [], 0
    for row in rows:
        s = np.asarray(row.repeats, float)
        if len(s) >= 2:
            repeated += 1
            others = (s.sum() - s) / (len(s) - 1)
            rel.append(float(np.mean(np.abs(s - others) / s)))
            absolute.append(float(np.mean(np.abs(s - others))))
        else:
            rel.append(row.rt_noise_rel)
            absolute.append(row.rt_noise_rel * row.rt_slowdown)
    if not rel:
        return NoiseFloor(float("nan"), float("nan"), 0, 0)
    return NoiseFloor(
        100.0 * float(np.mean(rel)),
        float(np.percentile(absolute, 90)),
        repeated,
        len(rel),
    )
