"""bench/traces.py: the REAL stand-in and the Azure-style generator are
seeded, hit their mean rates, and are as bursty as they claim; Trace and
trace_stats on hand-made arrivals; the load generator's arrival processes."""

from __future__ import annotations

import random

import pytest

from bench.traces import (
    PERCEPTION,
    Trace,
    azure_traces,
    perception_traces,
    trace_stats,
)
from bench.workloads import FIVE, WORKLOADS
from reefd.clients.loadgen import Arrivals

REAL_RATE_PER_S = 43.0


def _total(traces) -> list[float]:
    return [t for trace in traces for t in trace.offsets_s]


def test_perception_traces_are_seeded_and_sorted() -> None:
    a, b = perception_traces(seed=3), perception_traces(seed=3)
    assert a == b
    assert a != perception_traces(seed=4)
    assert set(a) == {s.model for s in PERCEPTION} == set(FIVE)
    for trace in a.values():
        assert trace.period_s == 60.0
        assert list(trace.offsets_s) == sorted(trace.offsets_s)
        assert trace.offsets_s[0] >= 0 and trace.offsets_s[-1] < 60.0


@pytest.mark.parametrize("seed", range(4))
def test_perception_total_rate_is_about_43_per_s(seed: int) -> None:
    stats = trace_stats(_total(perception_traces(seed=seed).values()), 60.0)
    assert stats.mean_rate_per_s == pytest.approx(REAL_RATE_PER_S, rel=0.06)
    expected = sum(s.expected_rate_per_s for s in PERCEPTION)
    assert expected == pytest.approx(REAL_RATE_PER_S, rel=0.01)


def test_perception_streams_are_periodic_with_jitter() -> None:
    traces = perception_traces(seed=0)
    vgg = trace_stats(traces["vgg19"].offsets_s, 60.0)  # always on, no bursts
    assert vgg.mean_rate_per_s == pytest.approx(10.0, rel=0.01)
    assert 0 < vgg.gap_cv < 0.1  # periodic, a little jitter
    lights = trace_stats(traces["inception_v3"].offsets_s, 60.0)  # on/off
    assert lights.gap_cv > 1.0


def test_azure_traces_are_seeded_and_hit_the_total_rate() -> None:
    a = azure_traces(10, 100.0, seed=1)
    assert a == azure_traces(10, 100.0, seed=1)
    assert a != azure_traces(10, 100.0, seed=2)
    for seed in range(4):
        traces = azure_traces(10, 100.0, seed=seed)
        assert len(traces) == 10
        stats = trace_stats(_total(traces), 60.0)
        assert stats.mean_rate_per_s == pytest.approx(100.0, rel=0.1)


def test_azure_traces_are_burstier_than_poisson() -> None:
    rng = random.Random(0)
    poisson, t = [], rng.expovariate(100.0)
    while t < 60.0:
        poisson.append(t)
        t += rng.expovariate(100.0)
    reference = trace_stats(poisson, 60.0)
    assert reference.gap_cv == pytest.approx(1.0, abs=0.05)
    assert reference.dispersion_100ms == pytest.approx(1.0, abs=0.15)
    for seed in range(3):
        traces = azure_traces(10, 100.0, seed=seed)
        merged = trace_stats(_total(traces), 60.0)
        assert merged.gap_cv > reference.gap_cv + 0.1
        assert merged.dispersion_100ms > 1.5
        per_function = [trace_stats(t.offsets_s, 60.0) for t in traces]
        bursty = [s for s in per_function if s.gap_cv > 1.0]
        assert len(bursty) >= 0.7 * len(per_function)


def test_trace_stats_of_periodic_arrivals() -> None:
    stats = trace_stats([(i + 0.5) / 10 for i in range(100)], 10.0)
    assert stats.requests == 100 and stats.mean_rate_per_s == 10.0
    assert stats.gap_cv == pytest.approx(0.0, abs=1e-9)
    assert stats.peak_rate_per_s == pytest.approx(10.0)


def test_a_trace_loops_and_validates() -> None:
    trace = Trace((0.0, 0.25, 0.5), 1.0)
    assert trace.rate_per_s == 3.0
    assert trace.arrivals_s(2.3) == [0.0, 0.25, 0.5, 1.0, 1.25, 1.5, 2.0, 2.25]
    with pytest.raises(ValueError, match="sorted"):
        Trace((0.5, 0.25), 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1.0\)"):
        Trace((0.0, 1.0), 1.0)
    with pytest.raises(ValueError, match="at least one"):
        Trace((), 1.0)


def test_trace_workloads_carry_their_traces() -> None:
    real = WORKLOADS["REAL"]
    rt = [t for t in real if t.priority == "rt"]
    assert [t.model for t in rt] == list(FIVE)
    assert all(t.arrival == "trace" and t.trace for t in rt)
    total = sum(t.mean_rate_per_s or 0 for t in rt)
    assert total == pytest.approx(REAL_RATE_PER_S, rel=0.06)
    azure = [t for t in WORKLOADS["AZURE"] if t.priority == "rt"]
    assert sum(t.mean_rate_per_s or 0 for t in azure) == pytest.approx(100, rel=0.1)


def _first(arrivals: Arrivals, n: int) -> list[float]:
    times = arrivals.times()
    return [next(times) for _ in range(n)]


def test_loadgen_arrival_processes() -> None:
    assert _first(Arrivals("uniform", 4.0), 3) == [0.0, 0.25, 0.5]
    phased = _first(Arrivals("uniform", 4.0, seed=5), 3)
    assert 0 < phased[0] < 0.25 and phased[1] - phased[0] == pytest.approx(0.25)
    gaps = _first(Arrivals("poisson", 50.0, seed=1), 2000)
    assert gaps == _first(Arrivals("poisson", 50.0, seed=1), 2000)
    assert gaps[-1] / len(gaps) == pytest.approx(1 / 50, rel=0.1)
    looped = _first(Arrivals("trace", None, (0.0, 0.3), 0.5), 5)
    assert looped == pytest.approx([0.0, 0.3, 0.5, 0.8, 1.0])
    with pytest.raises(ValueError, match="rate"):
        Arrivals("poisson")
