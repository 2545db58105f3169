"""interference/metrics.py on hand-made numbers whose answers are worked out
by hand: MAPE, p90 error, Kendall tau-b, top-1 regret, false-safe rate and
the noise floor."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from reefd.interference.metrics import (
    false_safe,
    kendall_tau_b,
    mape_pct,
    mean_kendall_tau,
    noise_floor,
    p90_abs_error,
    top1_regret,
)


def test_mape_and_p90() -> None:
    assert mape_pct(np.array([1.1, 0.9]), np.array([1.0, 1.0])) == pytest.approx(10.0)
    assert mape_pct(np.array([3.0]), np.array([2.0])) == pytest.approx(50.0)
    errors = np.arange(11) / 10  # |p - m| = 0.0, 0.1, ... 1.0
    assert p90_abs_error(1.0 + errors, np.ones(11)) == pytest.approx(0.9)


def test_kendall_tau_b_known_values() -> None:
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # a tie in x: 5 concordant, 0 discordant; tau-b = 5 / sqrt((6 - 1) * 6)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / 30**0.5)
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) == 0.0  # all tied: says nothing


def test_mean_kendall_tau_counts_rt_tasks_with_three_partners() -> None:
    predicted = np.array([1, 2, 3, 4, 1, 2, 3, 5, 6], dtype=float)
    measured = np.array([1, 3, 2, 4, 3, 2, 1, 1, 2], dtype=float)
    groups = ["a"] * 4 + ["b"] * 3 + ["c"] * 2  # c has two partners: left out
    tau, counted = mean_kendall_tau(predicted, measured, groups)
    assert counted == 2 and tau == pytest.approx((2 / 3 - 1) / 2)
    tau, counted = mean_kendall_tau(predicted[7:], measured[7:], groups[7:])
    assert counted == 0 and math.isnan(tau)


def test_top1_regret_with_and_without_ties() -> None:
    predicted = np.array([1.0, 1.2, 1.1, 2.0, 2.0, 3.0, 1.0])
    measured = np.array([1.3, 1.0, 1.1, 1.0, 1.4, 1.1, 5.0])
    groups = ["a", "a", "a", "b", "b", "b", "c"]
    # a: picks 1.3, best 1.0 -> 0.3; b: a tie between 1.0 and 1.4 -> 1.2 - 1.0
    regret, counted = top1_regret(predicted, measured, groups)
    assert counted == 2 and regret == pytest.approx(0.25)
    assert top1_regret(measured, measured, groups)[0] == 0.0


def test_false_safe_rate_by_hand() -> None:
    predicted = np.array([1.0, 1.05, 1.1, 1.2, 1.5])
    measured = np.array([1.2, 1.0, 1.15, 1.0, 1.3])
    # predicted safe (<= 1.1): the first three; measured above 1.1: two of them
    rate, n_safe = false_safe(predicted, measured, 1.1)
    assert n_safe == 3 and rate == pytest.approx(2 / 3)
    assert false_safe(predicted + 1.0, measured, 1.1) == (0.0, 0)
    assert false_safe(measured, measured, 1.1)[0] == 0.0


@dataclass(frozen=True)
class Pair:
    rt_slowdown: float
    rt_noise_rel: float
    repeats: tuple[float, ...]


def test_noise_floor_from_repeats_and_bootstrap() -> None:
    repeated = Pair(1.2, 0.5, (1.0, 1.2, 1.4))
    once = Pair(2.0, 0.05, (2.0,))
    floor = noise_floor([repeated, once])
    # repeats: |1.0 - 1.3| / 1.0, |1.2 - 1.2| / 1.2, |1.4 - 1.1| / 1.4
    rel = (0.3 + 0.0 + 0.3 / 1.4) / 3
    assert floor.mape_pct == pytest.approx(100 * (rel + 0.05) / 2)
    # absolute: 0.2 (mean of 0.3, 0, 0.3) and 0.05 * 2.0; p90 of the two
    assert floor.p90_abs_error == pytest.approx(0.1 + 0.9 * 0.1)
    assert (floor.repeated_pairs, floor.pairs) == (1, 2)
    assert floor.source == "repeats of 1 pairs + bootstrap intervals of 1 pairs"
