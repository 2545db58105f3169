"""Summary statistics of repeated timings: median and spread, ratio intervals.

Owns the numbers every profile row keeps about a set of repeated durations
(count, median, mean, standard deviation, min, 10th and 90th percentile, max,
all in microseconds) and the bootstrap interval of a ratio of two medians, which
is how a co-run slowdown and its noise are reported.

Imports the standard library only.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Stats:
    """Repeated durations of one thing, in microseconds."""

    n: int
    """How many samples."""
    median_us: float
    mean_us: float
    stdev_us: float
    """Sample standard deviation (0 with one sample)."""
    min_us: float
    p10_us: float
    """10th percentile (inclusive method; equals min with one sample)."""
    p90_us: float
    max_us: float

    @classmethod
    def of(cls, samples_us: Sequence[float]) -> Stats:
        """Statistics of `samples_us` (at least one sample)."""
        if not samples_us:
            raise ValueError("no samples to summarise")
        xs = sorted(float(x) for x in samples_us)
        if len(xs) > 1:
            deciles = statistics.quantiles(xs, n=10, method="inclusive")
            p10, p90 = deciles[0], deciles[-1]
            stdev = statistics.stdev(xs)
        else:
            p10 = p90 = xs[0]
            stdev = 0.0
        return cls(
            n=len(xs),
            median_us=statistics.median(xs),
            mean_us=statistics.fmean(xs),
            stdev_us=stdev,
            min_us=xs[0],
            p10_us=p10,
            p90_us=p90,
            max_us=xs[-1],
        )

    @property
    def spread_pct(self) -> float:
        """(p90 - p10) / median, in percent: the noise of one sample."""
        if self.median_us <= 0:
            return 0.0
        return 100.0 * (self.p90_us - self.p10_us) / self.median_us


STATS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Stats))
"""Stats' field names in order (the columns a Stats occupies in the store)."""


@dataclass(frozen=True)
class Ratio:
    """median(numerator) / median(denominator) with a bootstrap interval."""

    value: float
    low: float
    """Lower end of the interval (5th percentile of the bootstrap at 90 %)."""
    high: float

    @property
    def noise_pct(self) -> float:
        """Half the interval's width relative to the value, in percent."""
        return 50.0 * (self.high - self.low) / self.value if self.value else 0.0


def ratio_of_medians(
    numerator_us: Sequence[float],
    denominator_us: Sequence[float],
    *,
    draws: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> Ratio:
    """The ratio of medians and its percentile-bootstrap interval at `level`.

    Both sides are resampled with replacement `draws` times (seeded, so the
    same samples always give the same interval).
    """
    if not numerator_us or not denominator_us:
        raise ValueError("a ratio needs samples on both sides")
    value = statistics.median(numerator_us) / statistics.median(denominator_us)
    rng = random.Random(seed)
    ratios = sorted(
        statistics.median(rng.choices(numerator_us, k=len(numerator_us)))
        / statistics.median(rng.choices(denominator_us, k=len(denominator_us)))
        for _ in range(draws)
    )
    tail = (1.0 - level) / 2.0
    low = ratios[int(tail * (draws - 1))]
    high = ratios[int(round((1.0 - tail) * (draws - 1)))]
    return Ratio(value, low, high)
