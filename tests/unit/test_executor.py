"""Executor bookkeeping with a hand-driven fake device (fakes live in tests only)."""

from __future__ import annotations

from reefd.backends.device import DeviceLaunch
from reefd.executor import Executor
from reefd.scheduler.plan import (
    Completion,
    CompletionStatus,
    Form,
    Launch,
    PadSlice,
    Plan,
    Stream,
)


class FakeDevice:
    """Host queues per stream; the test decides what starts and what finishes."""

    def __init__(self, takes_runs: bool = False) -> None:
        self.takes_runs = takes_runs
        self.queues: dict[Stream, list[DeviceLaunch]] = {s: [] for s in Stream}
        self.running: list[DeviceLaunch] = []
        self.done: list[Completion] = []
        self.preempt_history: list[bool] = []

    def launch(self, launch: DeviceLaunch) -> None:
        self.queues[launch.stream].append(launch)

    def start_next(self, stream: Stream) -> DeviceLaunch:
        launch = self.queues[stream].pop(0)
        self.running.append(launch)
        return launch

    def finish(self, launch: DeviceLaunch, end_us: int) -> None:
        self.running.remove(launch)
        self.done.append(
            Completion(
                launch.task_id, launch.call_index, CompletionStatus.OK, 0, end_us
            )
        )

    def drop_queued(self, stream: Stream) -> list[DeviceLaunch]:
        dropped, self.queues[stream] = self.queues[stream], []
        return dropped

    def set_preempt(self, flag: bool) -> None:
        self.preempt_history.append(flag)

    def poll(self) -> list[Completion]:
        done, self.done = self.done, []
        return done


def _executor(
    clock: list[int], takes_runs: bool = False
) -> tuple[Executor, FakeDevice]:
    device = FakeDevice(takes_runs)
    ex = Executor(device, lambda: clock[0])  # type: ignore[arg-type]
    ex.bind(1, "model-be", "mem-be")
    ex.bind(2, "model-rt", "mem-rt")
    return ex, device


def test_reset_drops_queued_be_and_times_the_running_kernel():
    clock = [1000]
    ex, dev = _executor(clock)
    be = [Launch(1, i, Stream.BE, Form.PREEMPTIBLE) for i in range(3)]
    assert ex.run(Plan(be)) == []
    assert ex.inflight(Stream.BE) == 3
    running = dev.start_next(Stream.BE)
    dropped = ex.run(Plan([Launch(2, 0, Stream.RT)], reset_be=True, preempt_be=True))
    assert [(c.task_id, c.call_index, c.status) for c in dropped] == [
        (1, 1, CompletionStatus.DROPPED),
        (1, 2, CompletionStatus.DROPPED),
    ]
    assert dev.preempt_history == [True]
    assert ex.inflight(Stream.BE) == 1 and ex.inflight(Stream.RT) == 1
    assert dev.queues[Stream.RT][0].memory == "mem-rt"
    dev.finish(running, end_us=1350)
    ex.poll()
    assert ex.preemption_latencies_us == [350]
    assert dev.preempt_history == [True, False]
    assert ex.inflight(Stream.BE) == 0


def test_reset_with_nothing_running_costs_nothing():
    clock = [50]
    ex, dev = _executor(clock)
    ex.run(Plan([Launch(1, 0, Stream.BE)]))
    dropped = ex.run(Plan([], reset_be=True, preempt_be=True))
    assert len(dropped) == 1
    assert ex.preemption_latencies_us == [0]
    assert dev.preempt_history == [True, False]


def test_rt_completions_do_not_end_a_preemption():
    clock = [0]
    ex, dev = _executor(clock)
    ex.run(Plan([Launch(1, 0, Stream.BE)]))
    be = dev.start_next(Stream.BE)
    ex.run(Plan([Launch(2, 0, Stream.RT)], reset_be=True, preempt_be=True))
    rt = dev.start_next(Stream.RT)
    dev.finish(rt, end_us=900)
    ex.poll()
    assert ex.preemption_latencies_us == []  # BE still running
    dev.finish(be, end_us=400)
    ex.poll()
    assert ex.preemption_latencies_us == [400]


def test_padded_launch_carries_the_be_slice_and_both_calls_are_in_flight():
    clock = [0]
    ex, dev = _executor(clock)
    pad = PadSlice(1, 4, budget_vbs=64)
    ex.run(Plan([Launch(2, 0, Stream.RT, Form.PADDED, pad)]))
    (launch,) = dev.queues[Stream.RT]
    assert launch.form is Form.PADDED and launch.memory == "mem-rt"
    assert launch.pad is not None
    assert (launch.pad.task_id, launch.pad.call_index, launch.pad.budget_vbs) == (
        1,
        4,
        64,
    )
    assert (launch.pad.model, launch.pad.memory) == ("model-be", "mem-be")
    assert ex.inflight(Stream.RT) == 2
    dev.done += [
        Completion(2, 0, CompletionStatus.OK, 0, 5),
        Completion(1, 4, CompletionStatus.PREEMPTED, 0, 5),
    ]
    assert len(ex.poll()) == 2 and ex.inflight(Stream.RT) == 0


def test_a_run_goes_call_by_call_to_a_device_without_runs():
    ex, dev = _executor([0])
    ex.run(Plan([Launch(1, 2, Stream.BE, Form.PREEMPTIBLE, n_calls=3)]))
    queued = dev.queues[Stream.BE]
    assert [(x.call_index, x.n_calls) for x in queued] == [(2, 1), (3, 1), (4, 1)]
    assert ex.launches == 3 and ex.inflight(Stream.BE) == 3


def test_a_run_goes_whole_to_a_device_that_takes_runs_and_returns_in_pieces():
    clock = [100]
    ex, dev = _executor(clock, takes_runs=True)
    ex.run(Plan([Launch(1, 0, Stream.BE, Form.PREEMPTIBLE, n_calls=5)]))
    ex.run(Plan([Launch(1, 5, Stream.BE, Form.PREEMPTIBLE, n_calls=2)]))
    assert [(x.call_index, x.n_calls) for x in dev.queues[Stream.BE]] == [
        (0, 5),
        (5, 2),
    ]
    assert ex.launches == 2 and ex.inflight(Stream.BE) == 7
    dev.start_next(Stream.BE)
    dropped = ex.run(Plan([Launch(2, 0, Stream.RT)], reset_be=True, preempt_be=True))
    assert [(c.call_index, c.n_calls, c.status) for c in dropped] == [
        (5, 2, CompletionStatus.DROPPED)
    ]
    assert ex.inflight(Stream.BE) == 5
    # the running run comes back as two OK calls, the stopped one, the rest
    dev.done += [
        Completion(1, 0, CompletionStatus.OK, 0, 110, n_calls=2),
        Completion(1, 2, CompletionStatus.PREEMPTED, 0, 130),
    ]
    ex.poll()
    assert ex.inflight(Stream.BE) == 2 and ex.preemption_latencies_us == []
    dev.done.append(Completion(1, 3, CompletionStatus.DROPPED, 0, 130, n_calls=2))
    ex.poll()
    assert ex.inflight(Stream.BE) == 0 and ex.preemption_latencies_us == [30]


def test_a_yield_without_reset_times_the_be_calls_running_out():
    """`wait` drops and stops nothing: the latency runs until its BE calls end,
    and the preempt flag is never touched."""
    clock = [500]
    ex, dev = _executor(clock)
    ex.run(Plan([Launch(1, i, Stream.BE) for i in range(2)]))
    first = dev.start_next(Stream.BE)
    assert ex.run(Plan([Launch(2, 0, Stream.RT)], yield_be=True)) == []
    dev.finish(first, end_us=600)
    ex.poll()
    assert ex.preemption_latencies_us == []  # one BE call still queued
    dev.finish(dev.start_next(Stream.BE), end_us=900)
    ex.poll()
    assert ex.preemption_latencies_us == [400]
    assert dev.preempt_history == []
    ex.run(Plan([Launch(2, 1, Stream.RT)], yield_be=True))  # nothing of BE left
    assert ex.preemption_latencies_us == [400, 0]


def test_an_rt_reset_drops_queued_rt_launches_and_their_be_slices():
    ex, dev = _executor([700])
    pad = PadSlice(1, 3, 8)
    ex.run(Plan([Launch(2, 0, Stream.RT), Launch(2, 1, Stream.RT, Form.PADDED, pad)]))
    assert ex.inflight(Stream.RT) == 3  # two RT calls and the BE slice
    dev.start_next(Stream.RT)
    dropped = ex.run(Plan(reset_rt=True))
    assert [(c.task_id, c.call_index, c.status) for c in dropped] == [
        (2, 1, CompletionStatus.DROPPED),
        (1, 3, CompletionStatus.DROPPED),
    ]
    assert ex.inflight(Stream.RT) == 1 and dev.preempt_history == []
