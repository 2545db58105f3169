"""Co-run measurement: an RT task beside a BE task, both alone and together.

Owns the protocol of one pair: each task alone (`repeat` back-to-back runs
after a warm-up), then both at once from a common start until each side has at
least `repeat` runs that lie wholly inside the time both were running (runs
that started before the partner started or ended after it stopped are
dropped). The stop rule counts only runs already known to be inside the final
window, so the shorter task simply keeps going while the longer one finishes
its runs; a co-run that cannot get there within a deadline scaled from the
runs alone is refused, naming the pair and what each side did. The slowdown of
each side is median(together) / median(alone), with a seeded 90 % bootstrap
interval as its noise. How two tasks run at once is the backend's business
(`Backend.pair_runners` and `Backend.corun`: one worker process per side on the
CPU, one stream per side on a GPU); the runs alone use the same runners.

Imports the standard library and this package only.
"""

from __future__ import annotations

import bisect
import statistics
import threading
import time
from collections.abc import Callable, Sequence

from reefd.errors import ReefError
from reefd.profiler.records import ModelIdentity, PairProfile, utc_now
from reefd.profiler.runner import Backend, Span, TaskRunner
from reefd.profiler.stats import Stats, ratio_of_medians

DEADLINE_BASE_S = 10.0
"""A co-run may always take this long, whatever the tasks' durations."""
DEADLINE_SLOWDOWN = 50.0
"""...plus this many times as long as its runs would take alone, back to back."""


def durations(spans: Sequence[Span]) -> list[float]:
    return [end - start for start, end in spans]


def overlapped(a: Sequence[Span], b: Sequence[Span]) -> tuple[list[Span], list[Span]]:
    """The spans of each side that lie wholly inside the window both ran in."""
    if not a or not b:
        return [], []
    start = max(a[0][0], b[0][0])
    end = min(a[-1][1], b[-1][1])

    def inside(spans: Sequence[Span]) -> list[Span]:
        return [s for s in spans if s[0] >= start and s[1] <= end]

    return inside(a), inside(b)


class Overlap:
    """The co-run's stop rule, fed each side's finished runs as they come.

    The window both sides ran in starts at the later first start and ends at
    the earlier last end seen so far; the final window can only end later, so
    a run inside it now stays inside. `on_run` says stop once each side has
    `repeat` runs inside it, or once `deadline_s` has passed. Thread-safe.
    """

    def __init__(self, repeat: int, deadline_s: float, tick: Callable[[], None]):
        self.repeat = repeat
        self.deadline_s = deadline_s
        self._tick = tick
        self._ticked = 0
        self._starts: tuple[list[float], list[float]] = ([], [])
        self._ends: tuple[list[float], list[float]] = ([], [])
        self._lock = threading.Lock()
        self._began = time.monotonic()
        self.expired = False

    def runs(self) -> tuple[int, int]:
        """Runs each side has finished so far."""
        return len(self._ends[0]), len(self._ends[1])

    def kept(self) -> tuple[int, int]:
        """Runs of each side known to lie inside the final window."""
        if not self._ends[0] or not self._ends[1]:
            return 0, 0
        start = max(self._starts[0][0], self._starts[1][0])
        end = min(self._ends[0][-1], self._ends[1][-1])
        return tuple(  # type: ignore[return-value]
            max(
                0,
                bisect.bisect_right(self._ends[i], end)
                - bisect.bisect_left(self._starts[i], start),
            )
            for i in (0, 1)
        )

    def on_run(self, side: int, span: Span) -> bool:
        """Record one finished run of `side`; False once both sides have enough."""
        with self._lock:
            self._starts[side].append(span[0])
            self._ends[side].append(span[1])
            kept = min(self.kept())
            while self._ticked < min(kept, self.repeat):
                self._ticked += 1
                self._tick()
            if kept >= self.repeat:
                return False
            if time.monotonic() - self._began > self.deadline_s:
                self.expired = True
                return False
            return True


def alone(
    runner: TaskRunner, warmup: int, repeat: int, tick: Callable[[], None]
) -> list[float]:
    """`repeat` back-to-back runs of one task, after `warmup` untimed ones."""
    runner.warm_up(warmup)

    def keep_going(done: Sequence[Span]) -> bool:
        if 0 < len(done) <= repeat:
            tick()
        return len(done) < repeat

    return durations(runner.corun(keep_going)[:repeat])


def deadline_s(repeat: int, *alone_us: Sequence[float]) -> float:
    """How long a co-run may take: generous next to the runs alone."""
    longest_us = max(statistics.median(a) for a in alone_us)
    return DEADLINE_BASE_S + DEADLINE_SLOWDOWN * (repeat + 2) * longest_us / 1e6


def together(
    backend: Backend,
    runners: tuple[TaskRunner, TaskRunner],
    repeat: int,
    tick: Callable[[], None],
    deadline: float = DEADLINE_BASE_S,
    label: str = "the pair",
) -> tuple[list[float], list[float]]:
    """Both tasks at once until each has `repeat` overlapped runs; their
    overlapped durations (a ReefError naming `label` if that cannot be had)."""
    watch = Overlap(repeat, deadline, tick)
    backend.start_corun()
    began = time.monotonic()
    rt_all, be_all = backend.corun(runners, watch.on_run)
    rt_spans, be_spans = overlapped(rt_all, be_all)
    if min(len(rt_spans), len(be_spans)) < repeat:
        why = f"gave up after {time.monotonic() - began:.1f}s" if watch.expired else ""
        raise ReefError(
            f"{label}: the co-run kept {len(rt_spans)} RT and {len(be_spans)} BE "
            f"overlapped run(s) of the {repeat} each needs ({len(rt_all)} RT and "
            f"{len(be_all)} BE runs in all{'; ' + why if why else ''}): one side "
            "barely ran while the other did"
        )
    return durations(rt_spans), durations(be_spans)


def profile_pair(
    backend: Backend,
    runners: tuple[TaskRunner, TaskRunner],
    models: tuple[ModelIdentity, ModelIdentity],
    batches: tuple[int, int],
    warmup: int,
    repeat: int,
    tick: Callable[[], None],
) -> PairProfile:
    """Measure RT `runners[0]` beside BE `runners[1]` (from `pair_runners`)."""
    rt, be = runners
    label = f"{models[0].name} b{batches[0]} + {models[1].name} b{batches[1]}"
    backend.start_corun()  # the spans' clock, for the runs alone too
    rt_alone = alone(rt, warmup, repeat, tick)
    be_alone = alone(be, warmup, repeat, tick)
    limit_s = deadline_s(repeat, rt_alone, be_alone)
    rt_together, be_together = together(backend, runners, repeat, tick, limit_s, label)
    return PairProfile(
        rt=models[0],
        rt_batch=batches[0],
        be=models[1],
        be_batch=batches[1],
        method=backend.corun_method,
        rt_alone=Stats.of(rt_alone),
        rt_together=Stats.of(rt_together),
        be_alone=Stats.of(be_alone),
        be_together=Stats.of(be_together),
        rt_slowdown=ratio_of_medians(rt_together, rt_alone),
        be_slowdown=ratio_of_medians(be_together, be_alone),
        samples_us={
            "rt_alone": tuple(rt_alone),
            "rt_together": tuple(rt_together),
            "be_alone": tuple(be_alone),
            "be_together": tuple(be_together),
        },
        measured_at=utc_now(),
    )
