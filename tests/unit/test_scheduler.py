"""Scheduler and policies driven by hand: hand-made Tasks and Completions, explicit
now_us. No clocks, threads or devices; the fake device model lives in this file.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace

import pytest

from reefd.config import POLICIES
from reefd.scheduler import make_policy
from reefd.scheduler.exclusive import ExclusivePolicy
from reefd.scheduler.fifo import FifoPolicy
from reefd.scheduler.plan import (
    Completion,
    CompletionStatus,
    Form,
    Launch,
    Plan,
    Stream,
)
from reefd.scheduler.policy import Policy
from reefd.scheduler.reef import ReefPolicy
from reefd.scheduler.scheduler import CancelResult, Scheduler
from reefd.scheduler.state import SchedulerState
from reefd.scheduler.task import Priority, Task, TaskState

OK = CompletionStatus.OK
DROPPED = CompletionStatus.DROPPED
PREEMPTED = CompletionStatus.PREEMPTED
FAILED = CompletionStatus.FAILED


def rt(task_id: int, n_calls: int = 2, deadline_us: int = 1000, **kw) -> Task:
    kw.setdefault("client_id", task_id)
    kw.setdefault("arrival_us", 0)
    return Task(
        task_id=task_id,
        model_id=0,
        priority=Priority.RT,
        n_calls=n_calls,
        deadline_us=deadline_us,
        **kw,
    )


def be(task_id: int, n_calls: int = 4, **kw) -> Task:
    kw.setdefault("client_id", task_id)
    kw.setdefault("arrival_us", 0)
    return Task(
        task_id=task_id, model_id=0, priority=Priority.BE, n_calls=n_calls, **kw
    )


def calls(plan: Plan) -> list[tuple[int, int]]:
    """Every call the plan launches, runs expanded."""
    return [(x.task_id, x.call_index) for x in per_call(plan.launches)]


def per_call(launches) -> list[Launch]:
    """Runs split into one launch per call (what a device without runs sees)."""
    return [
        replace(x, call_index=i, n_calls=1)
        for x in launches
        for i in range(x.call_index, x.end_call)
    ]


def done(launches, status=OK, error: str = "") -> list[Completion]:
    """One completion per launch, covering its whole run."""
    return [
        Completion(x.task_id, x.call_index, status, error=error, n_calls=x.n_calls)
        for x in launches
    ]


def sched(policy: str = "reef", cap: int = 2) -> Scheduler:
    return Scheduler(make_policy(policy), be_inflight_cap=cap)


def run_to_idle(s: Scheduler, now_us: int = 0, limit: int = 100) -> list[int]:
    """Complete every launch as soon as it is planned; return tasks released."""
    released = []
    for step in range(limit):
        plan = s.plan(now_us + step)
        released += [t.task_id for t in s.on_complete(done(plan.launches), now_us)]
        if s.idle:
            return released
    raise AssertionError("did not drain")


# ---- make_policy, submit -------------------------------------------------


def test_make_policy_names():
    assert isinstance(make_policy("reef"), ReefPolicy)
    assert isinstance(make_policy("fifo"), FifoPolicy)
    assert isinstance(make_policy("exclusive"), ExclusivePolicy)
    assert [make_policy(n).name for n in ("reef", "fifo", "exclusive")] == [
        "reef",
        "fifo",
        "exclusive",
    ]


@pytest.mark.parametrize(
    "task, match",
    [
        (Task(1, 1, 0, Priority.RT, 2, 0), "deadline"),
        (be(1, state=TaskState.RUNNING), "not queued"),
        (be(1, next_call=1), "progress"),
        (be(1, n_calls=0), "n_calls"),
    ],
)
def test_submit_rejects_invalid_tasks(task, match):
    with pytest.raises(ValueError, match=match):
        sched().submit(task, 0)


def test_submit_rejects_duplicate_id():
    s = sched()
    s.submit(be(1), 0)
    with pytest.raises(ValueError, match="duplicate"):
        s.submit(rt(1), 0)


def test_cap_must_be_positive():
    with pytest.raises(ValueError, match="be_inflight_cap"):
        Scheduler(ReefPolicy(), be_inflight_cap=0)


# ---- reef ----------------------------------------------------------------


def test_rt_tasks_run_earliest_deadline_first():
    s = sched()
    s.submit(rt(1, deadline_us=300), 0)
    s.submit(rt(2, deadline_us=100), 0)
    s.submit(rt(3, deadline_us=200, arrival_us=5), 0)
    s.submit(rt(4, deadline_us=200, arrival_us=1), 0)
    order = []
    for now in range(10):
        plan = s.plan(now)
        assert {x.stream for x in plan.launches} <= {Stream.RT}
        assert {x.form for x in plan.launches} <= {Form.PLAIN}
        order += [tid for tid, _ in calls(plan)]
        s.on_complete(done(plan.launches), now)
    assert order == [2, 2, 4, 4, 3, 3, 1, 1]
    assert s.idle


def test_rt_waits_for_the_running_rt_task_then_goes_by_deadline():
    s = sched()
    s.submit(rt(1, n_calls=3, deadline_us=500), 0)
    first = s.plan(0)
    assert calls(first) == [(1, 0), (1, 1), (1, 2)]
    s.submit(rt(2, deadline_us=400), 1)
    s.submit(rt(3, deadline_us=100), 1)
    s.on_complete(done(per_call(first.launches)[:2]), 2)
    assert s.plan(2).launches == []  # task 1 still has a kernel on the device
    task1 = s.task(1)
    assert s.on_complete(done(per_call(first.launches)[2:]), 3) == [task1]
    assert calls(s.plan(4)) == [(3, 0), (3, 1)]
    assert task1.state is TaskState.DONE and task1.finished_us == 3


def test_rt_arrival_preempts_be_once_and_be_resumes_exactly():
    s = sched(cap=2)
    s.submit(be(10, n_calls=6), 0)
    p = s.plan(0)
    assert calls(p) == [(10, 0), (10, 1)]
    assert {(x.stream, x.form) for x in p.launches} == {(Stream.BE, Form.PREEMPTIBLE)}
    s.on_complete(done(per_call(p.launches)[:1]), 1)
    assert calls(s.plan(1)) == [(10, 2)]  # refill to the cap

    s.submit(rt(1, n_calls=2, deadline_us=100), 2)
    p = s.plan(2)
    assert p.reset_be
    assert calls(p) == [(1, 0), (1, 1)]
    assert s.task(10).preemptions == 1

    s.submit(rt(2, n_calls=1, deadline_us=200), 3)
    p = s.plan(3)  # same RT busy period, BE still in flight: no second reset
    assert not p.reset_be and p.launches == []
    assert s.task(10).preemptions == 1

    # call 1 was running and finishes; call 2 was queued and is dropped.
    s.on_complete(
        [Completion(10, 1, OK), Completion(10, 2, DROPPED)],
        4,
    )
    be_task = s.task(10)
    assert (be_task.next_call, be_task.done_calls, be_task.inflight) == (2, 2, 0)
    assert be_task.state is TaskState.PREEMPTED
    assert not s.plan(4)  # RT still live: no BE

    s.on_complete([Completion(1, 0, OK), Completion(1, 1, OK)], 5)
    p = s.plan(5)
    assert calls(p) == [(2, 0)] and not p.reset_be
    assert [t.task_id for t in s.on_complete(done(p.launches), 6)] == [2]

    # RT gone: BE resumes from exactly call 2 and finishes each call once.
    completed = [0, 1]
    for now in range(7, 20):
        p = s.plan(now)
        assert not p.reset_be
        completed += [i for _, i in calls(p)]
        released = s.on_complete(done(p.launches), now)
        if released:
            assert released == [be_task]
            break
    assert completed == [0, 1, 2, 3, 4, 5]
    assert be_task.state is TaskState.DONE and be_task.done_calls == 6
    assert be_task.finished_us == now and be_task.started_us == 0
    assert s.idle


def test_reset_again_in_a_new_rt_busy_period():
    s = sched(cap=1)
    s.submit(be(10, n_calls=10), 0)
    s.plan(0)
    s.submit(rt(1, n_calls=1), 1)
    p = s.plan(1)
    assert p.reset_be
    s.on_complete([Completion(10, 0, DROPPED), Completion(1, 0, OK)], 2)
    p = s.plan(2)
    assert calls(p) == [(10, 0)] and not p.reset_be
    s.submit(rt(2, n_calls=1), 3)
    assert s.plan(3).reset_be
    assert s.task(10).preemptions == 2


def test_no_reset_when_no_be_in_flight():
    s = sched()
    s.submit(be(10), 0)
    s.submit(rt(1), 0)
    p = s.plan(0)
    assert not p.reset_be and calls(p) == [(1, 0), (1, 1)]
    assert s.task(10).state is TaskState.QUEUED


def test_be_inflight_cap_respected():
    s = sched(cap=3)
    for tid in range(5):
        s.submit(be(tid, n_calls=4, arrival_us=tid), 0)
    device: deque[Launch] = deque()
    for now in range(30):
        p = s.plan(now)
        assert s.state.inflight(Stream.BE) <= 3
        if now == 0:
            assert calls(p) == [(0, 0), (0, 1), (0, 2)]
        device += p.launches
        if device:
            s.on_complete(done([device.popleft()]), now)  # one per step
    assert s.idle


def test_be_fill_takes_next_candidate():
    s = sched(cap=4)
    s.submit(be(1, n_calls=2, arrival_us=0), 0)
    s.submit(be(2, n_calls=5, arrival_us=1), 0)
    assert calls(s.plan(0)) == [(1, 0), (1, 1), (2, 0), (2, 1)]


def test_be_pick_by_most_progress_then_arrival():
    s = sched(cap=1)
    s.submit(be(1, n_calls=3, arrival_us=10), 0)
    p = s.plan(0)
    s.on_complete(done(p.launches), 1)
    s.submit(be(2, n_calls=3, arrival_us=0), 1)  # older, no progress
    s.submit(be(3, n_calls=3, arrival_us=0), 1)
    assert calls(s.plan(1)) == [(1, 1)]
    s.cancel(1, 2)
    s.on_complete([Completion(1, 1, OK)], 3)
    assert calls(s.plan(3)) == [(2, 0)]  # tie on progress: arrival, then id


def test_be_tasks_of_one_client_run_in_fifo_order():
    s = sched(cap=8)
    s.submit(be(1, n_calls=2, client_id=7, arrival_us=5), 0)
    s.submit(be(2, n_calls=2, client_id=7, arrival_us=0), 0)
    assert calls(s.plan(0)) == [(1, 0), (1, 1)]
    assert calls(s.plan(1)) == [(2, 0), (2, 1)]


# ---- fifo, exclusive -----------------------------------------------------


def test_fifo_runs_in_arrival_order_regardless_of_priority():
    s = sched("fifo", cap=2)
    s.submit(be(1, n_calls=3), 0)
    s.submit(rt(2, n_calls=2, deadline_us=1), 1)
    s.submit(be(3, n_calls=1), 2)
    order: list[tuple[int, int]] = []
    device: deque[Launch] = deque()
    for now in range(20):
        p = s.plan(now)
        assert not p.reset_be
        assert {(x.stream, x.form) for x in p.launches} <= {(Stream.BE, Form.PLAIN)}
        assert s.state.inflight_total() <= 2
        order += calls(p)
        device += p.launches
        if device:
            s.on_complete(done([device.popleft()]), now)
    assert order == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)]
    assert s.idle


def test_exclusive_never_co_runs():
    s = sched("exclusive", cap=1)
    s.submit(be(1, n_calls=3), 0)
    p = s.plan(0)
    assert calls(p) == [(1, 0), (1, 1), (1, 2)]  # all at once, cap ignored
    assert {(x.stream, x.form) for x in p.launches} == {(Stream.BE, Form.PLAIN)}
    s.submit(be(2, n_calls=1), 1)
    s.submit(rt(3, n_calls=2), 1)
    s.on_complete(done(per_call(p.launches)[:2]), 2)
    p2 = s.plan(2)
    assert not p2 and s.task(1).preemptions == 0
    s.on_complete(done(per_call(p.launches)[2:]), 3)
    p = s.plan(3)
    assert calls(p) == [(3, 0), (3, 1)] and per_call(p.launches)[0].stream is Stream.RT
    assert not s.plan(4)
    s.on_complete(done(p.launches), 5)
    assert calls(s.plan(6)) == [(2, 0)]


# ---- completions ---------------------------------------------------------


def test_failed_completion_fails_task_and_releases_after_inflight():
    s = sched(cap=3)
    s.submit(be(1, n_calls=5), 0)
    p = s.plan(0)
    assert s.on_complete(done(per_call(p.launches)[:1], FAILED, "boom"), 1) == []
    task = s.task(1)
    assert task.state is TaskState.FAILED and task.error == "boom"
    assert task.finished_us == 1
    assert not s.plan(2)  # failed tasks get no launches
    assert s.on_complete(done(per_call(p.launches)[1:2]), 3) == []
    assert s.on_complete(done(per_call(p.launches)[2:], DROPPED), 4) == [task]
    assert task.state is TaskState.FAILED and s.idle


def test_failed_without_error_text_names_the_call():
    s = sched()
    s.submit(rt(1, n_calls=1), 0)
    p = s.plan(0)
    (task,) = s.on_complete(done(p.launches, FAILED), 1)
    assert task.state is TaskState.FAILED and "call 0" in task.error


def test_unknown_and_stale_completions_are_ignored():
    s = sched()
    s.submit(be(1, n_calls=2), 0)
    p = s.plan(0)
    assert s.on_complete([Completion(999, 0, OK)], 1) == []
    assert s.on_complete([Completion(1, 5, OK)], 1) == []  # never launched
    s.on_complete(done(per_call(p.launches)[:1]), 2)
    s.on_complete(done(per_call(p.launches)[:1]), 2)  # duplicate
    assert s.task(1).done_calls == 1 and s.task(1).inflight == 1


def test_drop_while_later_launches_out_waits_for_them():
    s = sched(cap=3)
    s.submit(be(1, n_calls=5), 0)
    s.plan(0)
    s.submit(rt(2, n_calls=1), 1)
    p = s.plan(1)
    assert p.reset_be
    s.on_complete([Completion(1, 1, DROPPED), Completion(2, 0, OK)], 2)
    task = s.task(1)
    assert task.next_call == 1 and task.state is TaskState.RUNNING
    assert not s.plan(2)  # call 2 is still out: re-issuing call 1 would reorder
    s.on_complete([Completion(1, 2, DROPPED), Completion(1, 0, OK)], 3)
    assert calls(s.plan(3)) == [(1, 1), (1, 2), (1, 3)]


def test_reset_task_waits_until_all_its_launches_are_back():
    s = sched(cap=3)
    s.submit(be(1, n_calls=4), 0)
    p = s.plan(0)
    s.on_complete(done(per_call(p.launches)[:1]), 0)
    s.submit(rt(2, n_calls=1), 1)
    assert s.plan(1).reset_be
    s.on_complete([Completion(2, 0, OK)], 2)  # RT done before the drops arrive
    s.submit(be(3, n_calls=1), 2)
    assert calls(s.plan(2)) == [(3, 0)]  # task 1 drains; other BE work may run
    # the queued call is reported dropped before the stopped running one
    s.on_complete([Completion(1, 2, DROPPED)], 3)
    assert s.task(1).next_call == 2 and s.task(1).state is TaskState.RUNNING
    assert calls(s.plan(3)) == []  # call 1 is still out
    s.on_complete([Completion(1, 1, DROPPED)], 4)
    assert s.task(1).state is TaskState.PREEMPTED
    assert calls(s.plan(4)) == [(1, 1), (1, 2)]


# ---- cancel --------------------------------------------------------------


def test_cancel_without_inflight_releases_now():
    s = sched()
    s.submit(be(1), 0)
    result = s.cancel(1, 5)
    assert result == CancelResult(result.task, True)
    task, released = result
    assert released and task.state is TaskState.CANCELLED and task.finished_us == 5
    assert s.task(1) is None and s.idle
    assert s.cancel(1, 6) is None
    assert s.cancel(42, 6) is None


def test_cancel_with_inflight_releases_on_last_completion():
    s = sched(cap=3)
    s.submit(be(1, n_calls=6), 0)
    p = s.plan(0)
    task, released = s.cancel(1, 1)
    assert not released and task.state is TaskState.CANCELLED
    assert s.task(1) is task and not s.idle
    assert not s.plan(2)  # no further launches
    assert s.on_complete(done(per_call(p.launches)[:2]), 3) == []
    assert s.depths()["inflight"] == {"rt": 0, "be": 1}
    assert s.on_complete(done(per_call(p.launches)[2:], DROPPED), 4) == [task]
    assert task.state is TaskState.CANCELLED and s.idle


def test_cancel_of_failed_task_keeps_state():
    s = sched(cap=2)
    s.submit(be(1, n_calls=3), 0)
    p = s.plan(0)
    s.on_complete(done(per_call(p.launches)[:1], FAILED, "x"), 1)
    task, released = s.cancel(1, 2)
    assert task.state is TaskState.FAILED and not released
    assert s.on_complete(done(per_call(p.launches)[1:]), 3) == [task]


def test_cancel_client():
    s = sched(cap=2)
    s.submit(be(1, n_calls=4, client_id=7), 0)
    s.submit(be(2, n_calls=4, client_id=7), 0)
    s.submit(rt(3, client_id=7), 0)
    s.submit(be(4, n_calls=4, client_id=8), 0)
    p = s.plan(0)  # RT 3 runs
    results = s.cancel_client(7, 1)
    assert [(r.task.task_id, r.released) for r in results] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    assert all(r.task.state is TaskState.CANCELLED for r in results)
    assert s.cancel_client(99, 1) == []
    assert [t.task_id for t in s.on_complete(done(p.launches), 2)] == [3]
    assert s.task(4).state is TaskState.QUEUED
    assert run_to_idle(s, 3) == [4]


def test_depths():
    s = sched(cap=1)
    s.submit(rt(1), 0)
    s.submit(be(2, client_id=5), 0)
    s.submit(be(3, client_id=5), 0)
    s.submit(be(4, client_id=6), 0)
    s.plan(0)
    assert s.depths() == {
        "live": 4,
        "rt_queued": 1,
        "be_queued": {5: 2, 6: 1},
        "inflight": {"rt": 2, "be": 0},
    }


# ---- invariants ----------------------------------------------------------


class _OutOfOrder(Policy):
    name = "bad"

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        return Plan([Launch(tid, 1, Stream.BE) for tid in state.tasks])


class _OverCap(Policy):
    name = "overcap"
    caps_be_inflight = True

    def plan(self, state: SchedulerState, now_us: int) -> Plan:
        return Plan([Launch(t.task_id, 0, Stream.BE) for t in state.in_arrival_order()])


def test_plan_asserts_invariants():
    s = Scheduler(_OutOfOrder(), be_inflight_cap=4)
    s.submit(be(1), 0)
    with pytest.raises(AssertionError, match="out of order"):
        s.plan(0)
    s = Scheduler(_OverCap(), be_inflight_cap=1)
    s.submit(be(1), 0)
    s.submit(be(2), 0)
    with pytest.raises(AssertionError, match="cap"):
        s.plan(0)


# ---- randomized property -------------------------------------------------


class FakeDevice:
    """Two in-order queues; runs one launch at a time, the RT queue first.

    A reset drops every queued BE launch (DROPPED) and, when the plan raises the
    preempt flag, at random stops a running preemptible BE kernel (PREEMPTED);
    both come back spread over a few ticks. With `runs`, a launch is a run of
    calls that comes back whole, or, when stopped, as an OK prefix, the
    PREEMPTED call and the DROPPED rest; without, every call is its own launch.
    """

    def __init__(self, rng: random.Random, runs: bool = False) -> None:
        self.rng = rng
        self.runs = runs
        self.queues: dict[Stream, deque[Launch]] = {s: deque() for s in Stream}
        self.running: Launch | None = None
        self.ticks_left = 0
        self.pending: list[Completion] = []
        self.resets = 0
        self.rt_resets = 0
        self.rt_dropped = 0
        self.preempted = 0

    def apply(self, plan: Plan) -> None:
        if plan.reset_rt:
            self.rt_resets += 1
            self.rt_dropped += len(self.queues[Stream.RT])
            self.pending += done(self.queues[Stream.RT], DROPPED)
            self.queues[Stream.RT].clear()
        if plan.reset_be:
            self.resets += 1
            be_queue = self.queues[Stream.BE]
            self.pending += done(be_queue, DROPPED)
            be_queue.clear()
            r = self.running
            stoppable = r is not None and r.form is Form.PREEMPTIBLE
            if plan.preempt_be and stoppable and self.rng.random() < 0.5:
                self.pending += self._stop(r)
                self.running = None
                self.preempted += 1
        launches = plan.launches if self.runs else per_call(plan.launches)
        for launch in launches:
            self.queues[launch.stream].append(launch)

    def _stop(self, run: Launch) -> list[Completion]:
        ran = self.rng.randint(0, run.n_calls - 1)
        stopped = run.call_index + ran
        parts = [
            (run.call_index, ran, OK),
            (stopped, 1, PREEMPTED),
            (stopped + 1, run.end_call - stopped - 1, DROPPED),
        ]
        return [
            Completion(run.task_id, first, status, n_calls=n)
            for first, n, status in parts
            if n > 0
        ]

    def tick(self) -> list[Completion]:
        cut = self.rng.randint(0, len(self.pending))  # drops trickle back
        out, self.pending = self.pending[:cut], self.pending[cut:]
        if self.running is None:
            queue = self.queues[Stream.RT] or self.queues[Stream.BE]
            if queue:
                self.running = queue.popleft()
                self.ticks_left = self.rng.randint(1, 3)
        if self.running is not None:
            self.ticks_left -= 1
            if self.ticks_left <= 0:
                out += done([self.running])
                self.running = None
        return out


def _random_task(rng: random.Random, task_id: int, now_us: int) -> Task:
    n_calls = rng.randint(1, 6)
    client_id = rng.randint(0, 3)
    if rng.random() < 0.3:
        deadline = now_us + rng.randint(20, 200)
        return rt(task_id, n_calls, deadline, client_id=client_id, arrival_us=now_us)
    return be(task_id, n_calls, client_id=client_id, arrival_us=now_us)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cancel_rate", [0.0, 0.02])
@pytest.mark.parametrize("runs", [False, True], ids=["per-call", "runs"])
def test_random_runs_complete_every_call_once_in_order(policy, seed, cancel_rate, runs):
    rng = random.Random(seed)
    s = sched(policy, cap=rng.randint(1, 4))
    device = FakeDevice(rng, runs)
    submitted: dict[int, Task] = {}
    completed: dict[int, list[int]] = {}
    released: dict[int, int] = {}
    drops = 0
    arrivals_until, now = 300, 0
    while now < arrivals_until or not s.idle:
        assert now < 20_000, "did not drain"
        if now < arrivals_until and rng.random() < 0.2:
            task = _random_task(rng, len(submitted), now)
            s.submit(task, now)
            submitted[task.task_id] = task
            completed[task.task_id] = []
        if cancel_rate and rng.random() < cancel_rate and submitted:
            result = s.cancel(rng.choice(list(submitted)), now)
            if result is not None and result.released:
                tid = result.task.task_id
                released[tid] = released.get(tid, 0) + 1
        device.apply(s.plan(now))
        out = device.tick()
        for c in out:
            assert c.task_id not in released, "completion after release"
            drops += c.status is DROPPED
            if c.status is OK:
                assert c.call_index == len(completed[c.task_id]), "out of order"
                completed[c.task_id] += range(c.call_index, c.call_index + c.n_calls)
        for task in s.on_complete(out, now):
            released[task.task_id] = released.get(task.task_id, 0) + 1
        now += 1

    assert released == dict.fromkeys(submitted, 1)
    for tid, task in submitted.items():
        assert task.inflight == 0
        if task.state is TaskState.CANCELLED:
            assert cancel_rate > 0
            assert completed[tid] == list(range(task.done_calls))
        else:
            assert task.state is TaskState.DONE, task
            assert completed[tid] == list(range(task.n_calls))
            assert task.done_calls == task.n_calls
    be_drops = drops - device.rt_dropped
    if policy == "reef":
        assert device.resets > 0 and be_drops + device.preempted > 0
    elif policy == "reset_hq":
        assert device.resets > 0  # a reset may find only a running kernel
    else:
        assert device.resets == 0 and be_drops == 0
    if policy not in ("reef", "wait", "reset_hq"):
        assert device.rt_resets == 0  # only the reef family lets RT overtake
    if policy != "reef":
        assert device.preempted == 0


# ---- the baselines: streams, wait, reset_hq -------------------------------------


def _be_running_then_rt(policy: str) -> tuple[Scheduler, Plan]:
    """A BE task with two launches out, then an RT arrival; the RT-time plan."""
    s = sched(policy, cap=2)
    s.submit(be(10, n_calls=6), 0)
    first = s.plan(0)
    assert calls(first) == [(10, 0), (10, 1)]
    s.submit(rt(1, n_calls=2, deadline_us=100), 1)
    return s, s.plan(1)


def test_reef_resets_and_raises_the_preempt_flag():
    _, p = _be_running_then_rt("reef")
    assert p.reset_be and p.preempt_be and calls(p) == [(1, 0), (1, 1)]


def test_reset_hq_clears_host_queues_without_the_flag_and_runs_plain_be():
    s, p = _be_running_then_rt("reset_hq")
    assert p.reset_be and not p.preempt_be
    assert calls(p) == [(1, 0), (1, 1)]
    assert s.task(10).preemptions == 1
    s2 = sched("reset_hq")
    s2.submit(be(11), 0)
    assert {x.form for x in s2.plan(0).launches} == {Form.PLAIN}


def test_wait_neither_drops_nor_preempts_and_issues_no_be_while_rt_runs():
    s, p = _be_running_then_rt("wait")
    assert not p.reset_be and not p.preempt_be
    assert calls(p) == [(1, 0), (1, 1)]
    s.on_complete([Completion(10, 0, OK), Completion(10, 1, OK)], 2)
    assert calls(s.plan(2)) == []  # RT still live: BE waits
    s.on_complete([Completion(1, 0, OK), Completion(1, 1, OK)], 3)
    assert calls(s.plan(3)) == [(10, 2), (10, 3)]


def test_streams_keeps_issuing_be_beside_rt():
    s, p = _be_running_then_rt("streams")
    assert not p.reset_be
    assert calls(p) == [(1, 0), (1, 1)]
    s.on_complete([Completion(10, 0, OK)], 2)
    p = s.plan(2)
    assert calls(p) == [(10, 2)] and per_call(p.launches)[0].stream is Stream.BE
    assert {x.form for x in p.launches} == {Form.PLAIN}


def test_preempted_call_is_relaunched_not_skipped():
    s = sched("reef", cap=1)
    s.submit(be(10, n_calls=3), 0)
    assert calls(s.plan(0)) == [(10, 0)]
    s.submit(rt(1, n_calls=1), 1)
    p = s.plan(1)
    assert p.reset_be and p.preempt_be
    s.on_complete([Completion(10, 0, PREEMPTED), Completion(1, 0, OK)], 2)
    task = s.task(10)
    assert (task.next_call, task.done_calls) == (0, 0)
    assert task.state is TaskState.PREEMPTED
    assert calls(s.plan(3)) == [(10, 0)]  # the device resumes its counter


def test_an_earlier_deadline_rt_task_takes_over_at_a_kernel_boundary():
    s = sched("reef")
    s.submit(rt(1, n_calls=4, deadline_us=1000), 0)
    first = s.plan(0)
    assert calls(first) == [(1, 0), (1, 1), (1, 2), (1, 3)]
    s.submit(rt(2, n_calls=2, deadline_us=50, arrival_us=1), 1)
    p = s.plan(1)
    assert p.reset_rt and not p.launches and not p.reset_be
    # call 0 was running; the device drops what it had not started
    s.on_complete(done(per_call(first.launches)[1:], DROPPED), 2)
    assert s.plan(2).launches == []  # task 1's call 0 is still on the device
    s.on_complete(done(per_call(first.launches)[:1]), 3)
    assert calls(s.plan(3)) == [(2, 0), (2, 1)]  # the earlier deadline first
    s.on_complete(done(s.plan(3).launches), 4)
