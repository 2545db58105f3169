"""Co-run measurement: an RT task beside a BE task, both alone and together.

Owns the protocol of one pair: each task alone (`repeat` back-to-back runs
after a warm-up), then both at once, each from its own host thread, until each
has at least `repeat` runs that lay wholly inside the time both were running
(runs that started before the partner started or ended after it stopped are
dropped). The slowdown of each side is median(together) / median(alone), with
a seeded 90 % bootstrap interval as its noise. How two tasks run at once is the
backend's business (threads on the CPU: a stand-in; streams on a GPU).

Imports the standard library and this package only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from reefd.errors import ReefError
from reefd.profiler.records import ModelIdentity, PairProfile, utc_now
from reefd.profiler.runner import Backend, Span, TaskRunner
from reefd.profiler.stats import Stats, ratio_of_medians

EXTRA_RUNS = 2
"""Runs past `repeat` each side makes together, to cover dropped edge runs."""


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


def alone(runner: TaskRunner, warmup: int, repeat: int, tick: Callable[[], None]):
    """`repeat` back-to-back runs of one task, after `warmup` untimed ones."""
    runner.warm_up(warmup)

    def keep_going(done: int) -> bool:
        if done:
            tick()
        return done < repeat

    return durations(runner.corun(keep_going))


def together(
    backend: Backend,
    rt: TaskRunner,
    be: TaskRunner,
    repeat: int,
    tick: Callable[[], None],
) -> tuple[list[float], list[float]]:
    """Both tasks at once, each from a thread; their overlapped durations."""
    want = repeat + EXTRA_RUNS
    stop = threading.Event()
    counts = [0, 0]
    spans: list[list[Span]] = [[], []]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(side: int, runner: TaskRunner) -> None:
        def keep_going(done: int) -> bool:
            with lock:
                if side == 0 and done > counts[0]:
                    tick()
                counts[side] = done
                if min(counts) >= want:
                    stop.set()
            return not stop.is_set()

        try:
            spans[side] = runner.corun(keep_going)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)
            stop.set()

    backend.start_corun()
    threads = [
        threading.Thread(target=worker, args=(i, r), name=f"reef-profile-{n}")
        for i, (r, n) in enumerate(((rt, "rt"), (be, "be")))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    rt_spans, be_spans = overlapped(spans[0], spans[1])
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
    """Measure RT `runners[0]` beside BE `runners[1]`."""
    rt, be = runners
    backend.start_corun()  # the spans' clock, for the runs alone too
    rt_alone = alone(rt, warmup, repeat, tick)
    be_alone = alone(be, warmup, repeat, tick)
    rt_together, be_together = together(backend, rt, be, repeat, tick)
    if not rt_together or not be_together:
        raise ReefError(
            "the co-run kept no overlapped runs; raise --repeat (one task may be "
            "much longer than the other)"
        )
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
