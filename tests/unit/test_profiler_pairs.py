"""profiler/pairs.py: the overlap window and its stop rule with sleeping fake
runners on threads, then real co-runs of small models on the cpu backend,
one worker process per side (cpu_corun.py): enough overlapped runs on each
side, finite slowdowns, a shared clock, stored and read back, and many pairs
in a row without a refused co-run."""

from __future__ import annotations

import math
import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from reefd.errors import BackendError, ReefError
from reefd.profiler.cpu_corun import WorkerRunner, Workers
from reefd.profiler.cpu_runner import CpuBackend, TaskBytes
from reefd.profiler.measure import Loaded, Lowerings
from reefd.profiler.pairs import Overlap, overlapped, profile_pair, together
from reefd.profiler.records import ModelIdentity
from reefd.profiler.runner import Span, TaskRunner, corun_in_threads, open_backend
from reefd.profiler.store import Store
from reefd.profiler.target import file_target

# --- fakes: sleeping runners on threads --------------------------------------------


class SleepRunner:
    """A 'task' that sleeps `seconds` per run (monotonic spans, in us)."""

    n_calls = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def warm_up(self, runs: int) -> None:
        pass

    def corun(self, keep_going: Callable[[Sequence[Span]], bool]) -> list[Span]:
        spans: list[Span] = []
        while keep_going(spans):
            start = time.monotonic()
            time.sleep(self.seconds)
            spans.append((start * 1e6, time.monotonic() * 1e6))
        return spans

    def close(self) -> None:
        pass


class Threads:
    name = "fake"
    corun_method = "fake: two sleeping threads"
    default_arch = None

    def start_corun(self) -> None:
        pass

    def corun(
        self, runners: tuple[TaskRunner, TaskRunner], on_run: Callable[..., bool]
    ) -> tuple[list[Span], list[Span]]:
        return corun_in_threads(runners, on_run)


class Apart(Threads):
    """A broken co-run: the BE side only runs after the RT side stopped."""

    def corun(
        self, runners: tuple[TaskRunner, TaskRunner], on_run: Callable[..., bool]
    ) -> tuple[list[Span], list[Span]]:
        rt = [(float(i), i + 1.0) for i in range(8)]
        return rt, [(10.0, 11.0), (11.0, 12.0)]


def _ids() -> tuple[ModelIdentity, ModelIdentity]:
    return (
        ModelIdentity("a" * 64, "rt", "zoo:rt", {}),
        ModelIdentity("b" * 64, "be", "zoo:be", {}),
    )


def test_overlapped_keeps_runs_inside_the_common_window() -> None:
    a = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0)]
    b = [(5.0, 25.0), (25.0, 35.0)]
    kept_a, kept_b = overlapped(a, b)
    assert kept_a == [(10.0, 20.0), (20.0, 30.0)]  # window [5, 35]
    assert kept_b == b
    assert overlapped([], b) == ([], [])


def test_the_stop_rule_counts_only_runs_sure_to_be_kept() -> None:
    ticks: list[int] = []
    watch = Overlap(2, 60.0, lambda: ticks.append(1))
    # side 0 runs 0-10, 10-20, ...; side 1 starts at 5 with runs of 20
    assert watch.on_run(0, (0.0, 10.0)) and watch.kept() == (0, 0)
    assert watch.on_run(0, (10.0, 20.0))
    assert watch.on_run(1, (5.0, 25.0))  # window [5, 20]: 1 and 0 kept
    assert watch.kept() == (1, 0) and not ticks
    assert watch.on_run(0, (20.0, 30.0))
    assert watch.on_run(0, (30.0, 40.0))  # window still ends at 25
    assert watch.kept() == (1, 1) and len(ticks) == 1
    assert watch.on_run(1, (25.0, 45.0))  # window [5, 40]
    assert watch.kept() == (3, 1)
    assert not watch.on_run(0, (40.0, 50.0))  # window [5, 45]: (3, 2): stop
    assert watch.kept() == (3, 2) and len(ticks) == 2 and not watch.expired
    # whatever comes after, the final cut keeps at least what the rule counted
    a = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.0), (40.0, 50.0)]
    b = [(5.0, 25.0), (25.0, 45.0), (45.0, 60.0)]
    assert [len(kept) for kept in overlapped(a, b)] == [4, 2]


def test_the_stop_rule_gives_up_at_its_deadline() -> None:
    watch = Overlap(5, 0.0, lambda: None)
    assert not watch.on_run(0, (0.0, 1.0)) and watch.expired


def test_together_gives_each_side_enough_overlapped_runs() -> None:
    fast, slow = SleepRunner(0.002), SleepRunner(0.005)
    ticks: list[int] = []
    rt, be = together(Threads(), (fast, slow), 5, lambda: ticks.append(1))
    assert len(rt) >= 5 and len(be) >= 5
    assert all(d >= 2000 for d in rt) and all(d >= 5000 for d in be)
    assert len(ticks) == 5


def test_a_co_run_without_overlap_is_refused_by_name() -> None:
    runners = (SleepRunner(0.001), SleepRunner(0.001))
    with pytest.raises(ReefError) as err:
        profile_pair(Apart(), runners, _ids(), (1, 8), 0, 3, lambda: None)
    message = str(err.value)
    assert message.startswith("rt b1 + be b8: the co-run kept 0 RT and 0 BE")
    assert "(8 RT and 2 BE runs in all)" in message


def test_profile_pair_reports_both_slowdowns() -> None:
    pair = profile_pair(
        Threads(),
        (SleepRunner(0.002), SleepRunner(0.003)),
        _ids(),
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


# --- real co-runs: one worker process per side ---------------------------------------

MODELS = """
import torch
from torch import nn


def mlp(batch=1):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 128))
    return m.eval(), (torch.randn(16 * batch, 128),)


def stream(batch=1):
    return nn.Sequential(nn.ReLU(), nn.Sigmoid()), (torch.randn(batch, 1 << 16),)


def conv(batch=1):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
    return m.eval(), (torch.randn(batch, 8, 16, 16),)


def long(batch=1):
    torch.manual_seed(0)
    return nn.Linear(1024, 1024).eval(), (torch.randn(128 * batch, 1024),)
"""
REPEAT = 5


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Loaded]:
    path = tmp_path_factory.mktemp("pairs") / "models.py"
    path.write_text(textwrap.dedent(MODELS))
    lowerings = Lowerings()
    names = ("mlp", "stream", "conv", "long")
    return {n: lowerings.get(file_target(f"{path}:{n}"), 1) for n in names}


@pytest.fixture(scope="module")
def cpu() -> Iterator[CpuBackend]:
    backend = open_backend("cpu", note=lambda _: None)
    assert isinstance(backend, CpuBackend)
    try:
        yield backend
    finally:
        backend.close()


def _measure(cpu: CpuBackend, rt: Loaded, be: Loaded, repeat: int = REPEAT):
    runners = cpu.pair_runners(((rt.lowered, rt.inputs), (be.lowered, be.inputs)))
    try:
        return profile_pair(
            cpu, runners, (rt.identity, be.identity), (1, 1), 1, repeat, lambda: None
        )
    finally:
        for r in runners:
            r.close()


def test_a_cpu_pair_runs_in_two_processes_and_is_stored(
    cpu: CpuBackend, tasks: dict[str, Loaded], tmp_path: Path
) -> None:
    pair = _measure(cpu, tasks["mlp"], tasks["conv"])
    assert pair.method.startswith("cpu processes: one worker process per task (1 ")
    assert pair.rt_alone.n == REPEAT and pair.be_alone.n == REPEAT
    assert pair.rt_together.n >= REPEAT and pair.be_together.n >= REPEAT
    for ratio in (pair.rt_slowdown, pair.be_slowdown):
        assert math.isfinite(ratio.value) and ratio.value > 0
        assert ratio.low <= ratio.value <= ratio.high
        # each process has a core of its own: no GIL starvation (it was 68-78x)
        assert ratio.value < 10.0
    with Store.open(tmp_path / "p.sqlite") as store:
        run_id = store.begin_run(
            cpu.environment(None), command="test", warmup=1, repeat=REPEAT
        )
        store.add_pair(run_id, pair)
        store.finish_run(run_id)
        back = store.pair_slowdown(pair.rt.name, pair.be.name)
    assert back is not None and back.method == pair.method
    assert back.rt_slowdown.value == pytest.approx(pair.rt_slowdown.value)
    assert back.be_together.n == pair.be_together.n
    assert back.samples_us["rt_together"] == pytest.approx(
        pair.samples_us["rt_together"]
    )


def test_both_workers_share_the_parents_clock_and_start_together(
    cpu: CpuBackend, tasks: dict[str, Loaded]
) -> None:
    t = tasks["stream"]
    runners = cpu.pair_runners(((t.lowered, t.inputs), (t.lowered, t.inputs)))
    try:
        workers = runners[0].workers  # type: ignore[attr-defined]
        pids = {p.pid for p in workers._processes}
        assert len(pids) == 2 and not pids & {None, os.getpid()}
        counts = [0, 0]

        def on_run(side: int, span: Span) -> bool:
            counts[side] += 1
            return min(counts) < 20

        before_us = time.monotonic_ns() / 1000
        rt, be = cpu.corun(runners, on_run)
        after_us = time.monotonic_ns() / 1000
    finally:
        for r in runners:
            r.close()
    assert len(rt) >= 20 and len(be) >= 20
    for spans in (rt, be):
        assert before_us <= spans[0][0] and spans[-1][1] <= after_us
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert abs(rt[0][0] - be[0][0]) < 50_000  # the barrier: starts within 50 ms
    kept_rt, kept_be = overlapped(rt, be)
    assert len(kept_rt) >= 15 and len(kept_be) >= 15


def test_many_cpu_pairs_in_a_row_never_refuse_the_co_run(
    cpu: CpuBackend, tasks: dict[str, Loaded]
) -> None:
    """The regression: thread co-runs refused about a third of 16-pair runs
    ("kept no overlapped runs") and put an MLP at 68-78x beside small tasks."""
    names = ("mlp", "stream", "conv")
    slowdowns = []
    for rt in names:
        for be in (*names, "mlp"):
            pair = _measure(cpu, tasks[rt], tasks[be])
            assert pair.rt_together.n >= REPEAT and pair.be_together.n >= REPEAT
            slowdowns += [pair.rt_slowdown.value, pair.be_slowdown.value]
    assert len(slowdowns) == 24
    assert all(0.2 < s < 10.0 for s in slowdowns), slowdowns


def test_a_short_task_beside_a_long_one_keeps_going(
    cpu: CpuBackend, tasks: dict[str, Loaded]
) -> None:
    pair = _measure(cpu, tasks["stream"], tasks["long"], repeat=3)
    ratio = pair.be_alone.median_us / pair.rt_alone.median_us
    assert ratio > 20  # the shorter side runs far more often than the longer
    assert pair.rt_together.n >= 3 * ratio / 2 and pair.be_together.n >= 3


def test_a_worker_error_names_the_worker_and_it_keeps_serving(
    cpu: CpuBackend, tasks: dict[str, Loaded]
) -> None:
    t = tasks["mlp"]
    runners = cpu.pair_runners(((t.lowered, t.inputs), (t.lowered, t.inputs)))
    workers: Workers = runners[0].workers  # type: ignore[attr-defined]
    runners[1].close()
    named = r"cpu worker reef-profile-be \(pid \d+\): 'warm' before a task"
    with pytest.raises(BackendError, match=named):
        runners[1].warm_up(1)
    with pytest.raises(BackendError, match="takes the runners of pair_runners"):
        cpu.corun((runners[0], runners[0]), lambda side, span: False)
    again = workers.runner(1, TaskBytes.of(t.lowered, t.inputs))
    assert isinstance(again, WorkerRunner) and again.n_calls == runners[0].n_calls
    measured = again.measure(3, lambda: None)
    assert len(measured.task_us) == 3 and len(measured.call_us) == again.n_calls
    for r in (runners[0], again):
        r.close()


def test_a_worker_that_dies_mid_co_run_is_named_and_replaced(
    cpu: CpuBackend, tasks: dict[str, Loaded]
) -> None:
    t = tasks["stream"]
    runners = cpu.pair_runners(((t.lowered, t.inputs), (t.lowered, t.inputs)))
    be = runners[1].workers._processes[1]  # type: ignore[attr-defined]

    def on_run(side: int, span: Span) -> bool:
        if side == 0 and be.is_alive():
            os.kill(be.pid, signal.SIGKILL)
        return True

    began = time.monotonic()
    with pytest.raises(BackendError) as err:
        cpu.corun(runners, on_run)
    assert time.monotonic() - began < 30  # the RT worker stopped too
    assert f"cpu worker reef-profile-be (pid {be.pid}) exited with code -9" in str(
        err.value
    )
    pair = _measure(cpu, tasks["mlp"], tasks["stream"])  # fresh workers
    assert pair.rt_together.n >= REPEAT and pair.be_together.n >= REPEAT


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_a_worker_held_off_the_cpu_is_noted() -> None:
    notes: list[str] = []
    process = SimpleNamespace(name="reef-profile-rt", pid=7)
    workers = Workers([process, process], [], [], None, 1, notes.append)
    workers._check_cores({0: 0.95, 1: 1.02}, together=True)
    assert notes == []
    workers._check_cores({0: 0.48}, together=False)
    assert notes == [
        "cpu worker reef-profile-rt (pid 7) ran alone on 48% of its 1 core(s): "
        "other processes are busy on this machine's CPUs, and its timings "
        "include them"
    ]
