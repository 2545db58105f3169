"""Arrival traces for trace-driven clients, their generators and statistics.

Owns `Trace` (a client's sorted arrival offsets, looped every `period_s`),
the two seeded generators the bench uses, and `TraceStats`:

- `perception_traces`: DISB's REAL workload. The original is a trace of an
  autonomous-driving module (Apollo) that is not available; this is a
  SYNTHETIC STAND-IN with the character of a perception pipeline: cameras
  tick at fixed rates, several models consume the same frames a stage apart,
  every request jitters, some models only run while something is in view
  (on/off windows), and re-detections come in short bursts. Its five streams
  (`PERCEPTION`) average about 43 req/s in all, as the original's; `python -m
  bench workloads` prints the measured rate and burstiness.
- `azure_traces`: an Azure-Functions-style bursty load for the simulator.
  Per function, a heavy-tailed (lognormal) share of the total rate, and on/off
  activity with exponential "on" and Pareto "off" periods; inside an "on"
  window requests are Poisson. Far burstier than Poisson arrivals.

Burstiness is reported two ways: the coefficient of variation of the gaps
between arrivals (0 periodic, 1 Poisson, above 1 bursty) and the index of
dispersion of counts in 100 ms windows (variance / mean: 1 Poisson, below 1
smoother, above 1 burstier). Pure Python: the standard library's random and
statistics only; no reefd import.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trace:
    """Arrival offsets of one client in seconds, sorted, each in
    [0, period_s); a run longer than `period_s` loops the trace."""

    offsets_s: tuple[float, ...]
    period_s: float

    def __post_init__(self) -> None:
        if not self.period_s > 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s}")
        if not self.offsets_s:
            raise ValueError("a trace needs at least one arrival")
        if list(self.offsets_s) != sorted(self.offsets_s):
            raise ValueError("trace offsets must be sorted")
        if self.offsets_s[0] < 0 or self.offsets_s[-1] >= self.period_s:
            raise ValueError(
                f"trace offsets must lie in [0, {self.period_s}); got "
                f"{self.offsets_s[0]} .. {self.offsets_s[-1]}"
            )

    @property
    def rate_per_s(self) -> float:
        return len(self.offsets_s) / self.period_s

    def arrivals_s(self, duration_s: float) -> list[float]:
        """Every arrival before `duration_s`, the trace looped as needed."""
        out: list[float] = []
        loop = 0
        while loop * self.period_s < duration_s:
            base = loop * self.period_s
            out += [base + t for t in self.offsets_s if base + t < duration_s]
            loop += 1
        return out


@dataclass(frozen=True)
class TraceStats:
    requests: int
    duration_s: float
    mean_rate_per_s: float
    gap_cv: float
    """Coefficient of variation of inter-arrival gaps (Poisson: 1)."""
    dispersion_100ms: float
    """Variance / mean of arrivals per 100 ms window (Poisson: 1)."""
    peak_rate_per_s: float
    """The busiest 100 ms window's arrivals, per second."""

    def line(self) -> str:
        return (
            f"{self.mean_rate_per_s:.1f} req/s over {self.duration_s:g} s, "
            f"gap CV {self.gap_cv:.2f}, dispersion {self.dispersion_100ms:.2f}, "
            f"peak {self.peak_rate_per_s:.0f} req/s (Poisson: CV 1, dispersion 1)"
        )


def trace_stats(arrivals_s: Sequence[float], duration_s: float) -> TraceStats:
    """Statistics of arrivals in [0, duration_s) (any order)."""
    xs = sorted(t for t in arrivals_s if 0 <= t < duration_s)
    gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    cv = math.nan
    if len(gaps) >= 2 and statistics.fmean(gaps) > 0:
        cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    windows = max(1, int(duration_s / 0.1))
    counts = [0] * windows
    for t in xs:
        counts[min(windows - 1, int(t / 0.1))] += 1
    mean = statistics.fmean(counts)
    dispersion = statistics.pvariance(counts) / mean if mean else math.nan
    return TraceStats(
        requests=len(xs),
        duration_s=duration_s,
        mean_rate_per_s=len(xs) / duration_s,
        gap_cv=cv,
        dispersion_100ms=dispersion,
        peak_rate_per_s=max(counts) / 0.1,
    )


# ---- REAL: a synthetic perception pipeline ------------------------------------


@dataclass(frozen=True)
class SensorStream:
    """One model's requests in the perception pipeline."""

    model: str
    clock: str
    """The camera whose frames it consumes; streams on one clock share ticks."""
    rate_hz: float
    """That camera's frame rate."""
    delay_ms: float
    """Pipeline stage: how long after the frame tick the request goes out."""
    jitter_ms: float
    """Standard deviation of each request's normal jitter."""
    duty: float = 1.0
    """Fraction of the time the model runs at all (e.g. a light in view)."""
    mean_on_s: float = 0.0
    """Mean length of an active window when duty < 1."""
    bursts_per_s: float = 0.0
    """Extra bursts (re-detections), Poisson."""
    burst_requests: int = 0
    burst_gap_ms: float = 0.0

    @property
    def expected_rate_per_s(self) -> float:
        return self.rate_hz * self.duty + self.bursts_per_s * self.burst_requests


PERCEPTION: tuple[SensorStream, ...] = (
    # Front camera, 10 Hz: the detector, with re-detection bursts ...
    SensorStream("resnet152", "front", 10.0, 0.0, 2.0, 1.0, 0.0, 0.2, 3, 15.0),
    # ... and lane segmentation on the same frames, a stage later.
    SensorStream("vgg19", "front", 10.0, 8.0, 2.0),
    # Side cameras at 12.5 Hz, active 80 % of the time (turns, merges).
    SensorStream("densenet201", "side", 12.5, 3.0, 1.5, 0.8, 4.0),
    # Traffic-light classifier at 15 Hz, only while a light is in view.
    SensorStream("inception_v3", "front-tele", 15.0, 5.0, 3.0, 0.5, 2.0),
    # Language queries (route, signs' text): 4 Hz, loose, in pairs now and then.
    SensorStream("distilbert", "planner", 4.0, 0.0, 20.0, 1.0, 0.0, 0.5, 2, 30.0),
)
"""Expected rates 10.6 + 10 + 10 + 7.5 + 5 = 43.1 req/s."""


def perception_traces(
    duration_s: float = 60.0,
    seed: int = 0,
    streams: Sequence[SensorStream] = PERCEPTION,
) -> dict[str, Trace]:
    """One trace per stream's model, `duration_s` long (the loop period).

    Synthetic stand-in for DISB's REAL trace (see the module docstring).
    Deterministic for a seed."""
    rng = random.Random(f"perception-{seed}")
    phases = {s.clock: rng.random() / s.rate_hz for s in streams}
    out = {}
    for s in streams:
        times: list[float] = []
        windows = _on_windows(rng, duration_s, s.duty, s.mean_on_s)
        k = 0
        while (tick := phases[s.clock] + k / s.rate_hz) < duration_s:
            k += 1
            if _inside(windows, tick):
                times.append(tick + s.delay_ms / 1e3 + rng.gauss(0, s.jitter_ms / 1e3))
        t = _exp(rng, s.bursts_per_s)
        while t < duration_s:
            times += [t + j * s.burst_gap_ms / 1e3 for j in range(s.burst_requests)]
            t += _exp(rng, s.bursts_per_s)
        out[s.model] = _trace(times, duration_s)
    return out


# ---- Azure-Functions-style bursts ------------------------------------------------


def azure_traces(
    n_functions: int,
    total_rate_per_s: float,
    duration_s: float = 60.0,
    seed: int = 0,
    *,
    rate_sigma: float = 1.0,
    mean_on_s: float = 0.5,
    pareto_alpha: float = 1.5,
) -> list[Trace]:
    """`n_functions` bursty traces whose mean rates sum to `total_rate_per_s`.

    Per function: its share of the total is lognormal(0, `rate_sigma`)
    (a few popular functions, a long tail of rare ones, as in Azure's
    published function traces); its activity alternates "on" windows
    (exponential, mean `mean_on_s`) and "off" gaps (Pareto with shape
    `pareto_alpha`, heavy-tailed; scaled so the function is on a uniform
    20-80 % of the time); inside "on" windows requests are Poisson, at the
    rate that gives the function its share over the realised windows.
    Deterministic for a seed."""
    if n_functions < 1 or not total_rate_per_s > 0:
        raise ValueError("need n_functions >= 1 and total_rate_per_s > 0")
    rng = random.Random(f"azure-{seed}")
    weights = [rng.lognormvariate(0.0, rate_sigma) for _ in range(n_functions)]
    rates = [total_rate_per_s * w / sum(weights) for w in weights]
    traces = []
    for rate in rates:
        duty = rng.uniform(0.2, 0.8)
        mean_off_s = mean_on_s * (1 - duty) / duty
        xm = mean_off_s * (pareto_alpha - 1) / pareto_alpha  # Pareto mean = off
        windows: list[tuple[float, float]] = []
        t = rng.random() * mean_off_s
        while t < duration_s:
            on = rng.expovariate(1 / mean_on_s)
            windows.append((t, min(duration_s, t + on)))
            t += on + xm * rng.paretovariate(pareto_alpha)
        if not windows:
            windows = [(0.0, duration_s)]
        on_s = sum(b - a for a, b in windows)
        burst_rate = rate * duration_s / on_s
        times = []
        for a, b in windows:
            t = a + _exp(rng, burst_rate)
            while t < b:
                times.append(t)
                t += _exp(rng, burst_rate)
        if not times:  # a rare function still fires once
            times = [windows[0][0]]
        traces.append(_trace(times, duration_s))
    return traces


# ---- helpers --------------------------------------------------------------------


def _exp(rng: random.Random, rate: float) -> float:
    return rng.expovariate(rate) if rate > 0 else math.inf


def _on_windows(
    rng: random.Random, duration_s: float, duty: float, mean_on_s: float
) -> list[tuple[float, float]]:
    """Alternating on/off windows, `duty` of the time on: lengths uniform in
    [0.5, 1.5] x their mean (on: `mean_on_s`), so the realised duty stays
    close to `duty` over a minute."""
    if duty >= 1.0:
        return [(0.0, duration_s)]
    mean_off_s = mean_on_s * (1 - duty) / duty
    on = rng.random() < duty
    t, windows = 0.0, []
    while t < duration_s:
        length = (mean_on_s if on else mean_off_s) * rng.uniform(0.5, 1.5)
        if on:
            windows.append((t, t + length))
        t += length
        on = not on
    return windows


def _inside(windows: list[tuple[float, float]], t: float) -> bool:
    return any(a <= t < b for a, b in windows)


def _trace(times: Sequence[float], duration_s: float) -> Trace:
    """Times folded into [0, duration_s) (jitter may push one past an end)."""
    folded = sorted(round(t % duration_s, 6) % duration_s for t in times)
    return Trace(tuple(folded), duration_s)
