"""Serving metrics: RT latency percentiles, BE throughput, per-client counters.

Pure bookkeeping over times passed in by the engine; no clock reads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


def percentile_us(values: list[int] | deque[int], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.fromiter(values, dtype=np.int64), q))


@dataclass
class Metrics:
    """Windows of recent RT latencies and BE completion times."""

    rt_window: int = 10_000
    be_window_us: int = 10_000_000
    rt_latencies_us: deque[int] = field(default_factory=deque)
    be_done_at_us: deque[int] = field(default_factory=deque)
    rt_done: int = 0
    be_done: int = 0
    rt_slo_met: int = 0
    failed: int = 0

    def on_rt_done(self, latency_us: int, slo_met: bool) -> None:
        self.rt_done += 1
        self.rt_slo_met += int(slo_met)
        self.rt_latencies_us.append(latency_us)
        while len(self.rt_latencies_us) > self.rt_window:
            self.rt_latencies_us.popleft()

    def on_be_done(self, now_us: int) -> None:
        self.be_done += 1
        self.be_done_at_us.append(now_us)
        self._trim(now_us)

    def _trim(self, now_us: int) -> None:
        while self.be_done_at_us and self.be_done_at_us[0] < now_us - self.be_window_us:
            self.be_done_at_us.popleft()

    def be_throughput_per_s(self, now_us: int, since_us: int) -> float:
        """BE tasks per second over the window (or since start, if shorter)."""
        self._trim(now_us)
        span_us = min(self.be_window_us, max(1, now_us - since_us))
        return len(self.be_done_at_us) * 1e6 / span_us

    def snapshot(self, now_us: int, since_us: int) -> dict[str, float | int | None]:
        p50 = percentile_us(self.rt_latencies_us, 50)
        p99 = percentile_us(self.rt_latencies_us, 99)
        return {
            "rt_done": self.rt_done,
            "rt_p50_ms": None if p50 is None else p50 / 1000,
            "rt_p99_ms": None if p99 is None else p99 / 1000,
            "rt_slo_attainment": (self.rt_slo_met / self.rt_done)
            if self.rt_done
            else None,
            "be_done": self.be_done,
            "be_throughput_per_s": self.be_throughput_per_s(now_us, since_us),
            "failed": self.failed,
        }
