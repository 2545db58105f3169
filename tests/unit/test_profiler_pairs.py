"""profiler/pairs.py with sleeping fake runners: the overlap window, enough
runs on each side, and slowdowns with their bootstrap intervals."""

from __future__ import annotations

import time
from collections.abc import Callable

from reefd.profiler.pairs import overlapped, profile_pair, together
from reefd.profiler.records import ModelIdentity
from reefd.profiler.runner import Span


class SleepRunner:
    """A 'task' that sleeps `seconds` per run (perf_counter spans, in us)."""

    n_calls = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def warm_up(self, runs: int) -> None:
        pass

    def corun(self, keep_going: Callable[[int], bool]) -> list[Span]:
        spans: list[Span] = []
        while keep_going(len(spans)):
            start = time.perf_counter()
            time.sleep(self.seconds)
            spans.append((start * 1e6, time.perf_counter() * 1e6))
        return spans

    def close(self) -> None:
        pass


class Clockless:
    name = "fake"
    corun_method = "fake: two sleeping threads"
    default_arch = None

    def start_corun(self) -> None:
        pass


def test_overlapped_keeps_runs_inside_the_common_window() -> None:
    a = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0)]
    b = [(5.0, 25.0), (25.0, 35.0)]
    kept_a, kept_b = overlapped(a, b)
    assert kept_a == [(10.0, 20.0), (20.0, 30.0)]  # window [5, 35]
    assert kept_b == b
    assert overlapped([], b) == ([], [])


def test_together_gives_each_side_enough_overlapped_runs() -> None:
    fast, slow = SleepRunner(0.002), SleepRunner(0.005)
    ticks: list[int] = []
    rt, be = together(Clockless(), fast, slow, 5, lambda: ticks.append(1))
    assert len(rt) >= 5 and len(be) >= 5
    assert all(d >= 2000 for d in rt) and all(d >= 5000 for d in be)
    assert ticks


def test_profile_pair_reports_both_slowdowns() -> None:
    rt_id = ModelIdentity("a" * 64, "rt", "zoo:rt", {})
    be_id = ModelIdentity("b" * 64, "be", "zoo:be", {})
    pair = profile_pair(
        Clockless(),
        (SleepRunner(0.002), SleepRunner(0.003)),
        (rt_id, be_id),
        (1, 8),
        warmup=0,
        repeat=4,
        tick=lambda: None,
    )
    assert pair.rt_alone.n == 4 and pair.be_alone.n == 4
    assert pair.rt_together.n >= 4 and pair.be_together.n >= 4
    assert pair.method == "fake: two sleeping threads"
    for ratio in (pair.rt_slowdown, pair.be_slowdown):
        assert ratio.low <= ratio.value <= ratio.high
        assert 0.5 < ratio.value < 3.0  # sleeping threads barely interfere
    assert set(pair.samples_us) == {
        "rt_alone",
        "rt_together",
        "be_alone",
        "be_together",
    }
