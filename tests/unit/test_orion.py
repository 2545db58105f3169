"""The orion baseline: BE calls admitted beside RT work by class, SM need and
duration; never a reset or a preemption. Hand-made costs on a 10-SM device."""

from __future__ import annotations

import random

import pytest

from reefd.scheduler import make_policy
from reefd.scheduler.orion import OrionPolicy
from reefd.scheduler.padding import CallCost, DeviceShape
from reefd.scheduler.plan import Completion, CompletionStatus, Form, Plan, Stream
from reefd.scheduler.scheduler import Scheduler
from reefd.scheduler.task import Priority, Task, TaskState
from tests.unit.test_scheduler import FakeDevice, calls, done

OK = CompletionStatus.OK
DEVICE = DeviceShape(sms=10, ctas_per_sm=lambda registers, smem: 4)
"""10 SMs of 4 CTA slots: a call of n blocks needs ceil(n / 4) SMs."""


def cost(n_vb: int = 8, vb_us: float = 20.0, compute: bool | None = True):
    return CallCost(n_vb, 32, 0, vb_us, compute)


MEM_RT = cost(8, 100.0, compute=False)
"""A memory-bound RT call: 2 SMs, 100 us. Ten make a 1,000 us task, so BE
in flight beside it is held to 2.5 % of that: 25 us."""


def rt(task_id: int = 1, costs=(MEM_RT,) * 10, **kw) -> Task:
    kw.setdefault("client_id", task_id)
    n = len(costs) if costs is not None else 10
    return Task(
        task_id,
        model_id=0,
        priority=Priority.RT,
        n_calls=n,
        arrival_us=0,
        deadline_us=10_000,
        costs=costs,
        **kw,
    )


def be(task_id: int, call: CallCost | None = None, n_calls: int = 4, **kw) -> Task:
    kw.setdefault("client_id", task_id)
    costs = None if call is None else (call,) * n_calls
    return Task(
        task_id,
        model_id=0,
        priority=Priority.BE,
        n_calls=n_calls,
        arrival_us=0,
        costs=costs,
        **kw,
    )


def sched(cap: int = 2, device: DeviceShape | None = DEVICE) -> Scheduler:
    return Scheduler(make_policy("orion", device=device), be_inflight_cap=cap)


def be_calls(plan: Plan) -> list[tuple[int, int]]:
    return [(x.task_id, x.call_index) for x in plan.launches if x.stream is Stream.BE]


def rt_then_be(call: CallCost, cap: int = 2) -> tuple[Scheduler, Plan]:
    """An RT task arrives, then a BE task: the plan that considers them both."""
    s = sched(cap)
    s.submit(rt(), 0)
    s.submit(be(10, call), 0)
    return s, s.plan(0)


def test_compute_bound_be_beside_memory_bound_rt_runs() -> None:
    _, p = rt_then_be(cost(8, 20.0, compute=True))
    assert calls(p)[:4] == [(1, 0), (1, 1), (1, 2), (1, 3)]  # an RT window
    assert be_calls(p) == [(10, 0)]  # one call, though the cap has room for two
    assert {(x.stream, x.form) for x in p.launches} == {
        (Stream.RT, Form.PLAIN),
        (Stream.BE, Form.PLAIN),
    }
    assert not (p.reset_be or p.preempt_be or p.yield_be)


@pytest.mark.parametrize(
    "call, why",
    [
        (cost(8, 20.0, compute=False), "same class as the RT call"),
        (cost(8, 20.0, compute=None), "class unknown"),
        (cost(36, 20.0), "9 SMs, the RT call leaves 8"),
        (cost(8, 26.0), "26 us > 2.5 % of the RT task's 1,000 us"),
    ],
)
def test_be_is_withheld(call: CallCost, why: str) -> None:
    _, p = rt_then_be(call)
    assert be_calls(p) == [], why
    assert calls(p) == [(1, i) for i in range(4)]


def test_exactly_fitting_be_runs() -> None:
    _, p = rt_then_be(cost(32, 25.0))  # 8 SMs, 25 us: both limits exactly
    assert be_calls(p) == [(10, 0)]


def test_be_in_flight_counts_against_the_duration_threshold() -> None:
    s = sched(cap=4)
    s.submit(rt(), 0)
    for tid in (10, 11, 12):
        s.submit(be(tid, cost(8, 10.0)), 0)
    p = s.plan(0)
    assert be_calls(p) == [(10, 0), (11, 0)]  # 10 + 10 us; a third is 30 > 25
    s.on_complete([Completion(10, 0, OK)], 5)
    # 10 us back: room for 10 more, and the most progressed task goes first
    assert be_calls(s.plan(5)) == [(10, 1)]


def test_the_rt_call_in_flight_decides() -> None:
    """RT calls 0-3 memory-bound, 4-7 compute-bound: a compute-bound BE call
    runs beside the first window, a memory-bound one beside the second."""
    s = sched(cap=1)
    s.submit(rt(costs=(MEM_RT,) * 4 + (cost(8, 100.0, compute=True),) * 4), 0)
    s.submit(be(10, cost(8, 5.0, compute=True), n_calls=1), 0)
    s.submit(be(11, cost(8, 5.0, compute=False), n_calls=1), 0)
    first = s.plan(0)
    assert be_calls(first) == [(10, 0)]
    s.on_complete(done(first.launches), 400)
    second = s.plan(400)
    assert calls(second) == [(1, 4), (1, 5), (1, 6), (1, 7), (11, 0)]


def test_no_rt_live_fills_the_cap_with_plain_runs() -> None:
    s = sched(cap=3)
    s.submit(be(10, cost(36, 500.0, compute=False), n_calls=6), 0)
    p = s.plan(0)
    assert [(x.task_id, x.call_index, x.n_calls) for x in p.launches] == [(10, 0, 3)]
    assert {(x.stream, x.form) for x in p.launches} == {(Stream.BE, Form.PLAIN)}


def test_rt_is_one_run_without_be_work() -> None:
    s = sched()
    s.submit(rt(), 0)
    p = s.plan(0)
    assert [(x.call_index, x.n_calls) for x in p.launches] == [(0, 10)]
    s.submit(be(10, cost()), 1)
    assert calls(s.plan(1)) == []  # the whole RT task is out: BE waits for it


def test_be_already_out_on_rt_arrival_is_left_to_finish() -> None:
    s = sched(cap=2)
    s.submit(be(10, cost(8, 100.0)), 0)
    assert calls(s.plan(0)) == [(10, 0), (10, 1)]
    s.submit(rt(), 1)
    p = s.plan(1)
    assert not (p.reset_be or p.preempt_be)
    assert calls(p) == [(1, i) for i in range(4)]  # the cap is full
    s.on_complete([Completion(10, 0, OK), Completion(10, 1, OK)], 200)
    assert be_calls(s.plan(200)) == []  # 100 us a call: over 25 us


@pytest.mark.parametrize(
    "device, rt_costs, be_costs",
    [
        (None, (MEM_RT,) * 10, cost()),  # no device shape
        (DEVICE, None, cost()),  # no RT profile
        (DEVICE, (MEM_RT,) * 10, None),  # no BE profile
    ],
    ids=["no-device", "no-rt-costs", "no-be-costs"],
)
@pytest.mark.parametrize("name", ["orion", "wait"])
def test_without_profiles_it_behaves_like_wait(
    name, device, rt_costs, be_costs
) -> None:
    """BE already out when RT arrives finishes; no BE call is issued until
    the RT task is done; then BE resumes."""
    s = Scheduler(make_policy(name, device=device), be_inflight_cap=2)
    s.submit(be(10, be_costs, n_calls=6), 0)
    assert calls(s.plan(0)) == [(10, 0), (10, 1)]
    s.submit(rt(costs=rt_costs), 1)
    p = s.plan(1)
    assert not (p.reset_be or p.preempt_be) and be_calls(p) == []
    s.on_complete([Completion(10, 0, OK), Completion(10, 1, OK)], 2)
    s.on_complete(done(p.launches), 2)
    be_after_rt = []
    for now in range(2, 30):
        rt_live = s.state.rt_active()
        p = s.plan(now)
        assert not (p.reset_be or p.preempt_be)
        if not rt_live:
            be_after_rt += [c for c in calls(p) if c[0] == 10]
        assert rt_live is False or be_calls(p) == []
        s.on_complete(done(p.launches), now)
        if s.idle:
            break
    assert s.idle
    assert be_after_rt == [(10, 2), (10, 3), (10, 4), (10, 5)]


def test_make_policy_hands_orion_the_device_only() -> None:
    assert make_policy("orion", device=DEVICE)._device is DEVICE
    assert make_policy("orion")._device is None
    make_policy("fifo", device=DEVICE)  # ignored by policies that take none
    with pytest.raises(TypeError, match="unknown options"):
        make_policy("orion", devcie=DEVICE)


@pytest.mark.parametrize("seed", range(6))
def test_random_runs_never_reset_or_preempt_and_keep_the_rules(seed: int) -> None:
    rng = random.Random(seed)
    cap = rng.randint(1, 4)
    policy = OrionPolicy(DEVICE)
    s = Scheduler(policy, be_inflight_cap=cap)
    device = FakeDevice(rng, runs=True)
    tasks: dict[int, Task] = {}
    order: dict[int, list[int]] = {}
    co_run = 0
    now = 0
    while now < 1000 or not s.idle:
        assert now < 20_000, "did not drain"
        if now < 1000 and rng.random() < 0.15:
            tid = len(tasks)
            n = rng.randint(1, 8)
            prio = Priority.RT if rng.random() < 0.5 else Priority.BE
            if prio is Priority.RT:
                n_vb, vb_us = [4, 8, 40], [50.0, 200.0]
            else:
                n_vb, vb_us = [4, 8, 40], [1.0, 5.0, 50.0]
            kind = rng.choice([True, False, True, False, None])  # mostly one class
            kinds = [True, False, None, kind, kind, kind, kind, kind, kind]
            costs = tuple(
                cost(rng.choice(n_vb), rng.choice(vb_us), rng.choice(kinds))
                for _ in range(n)
            )
            deadline = now + 500 if prio is Priority.RT else None
            task = Task(tid, tid % 4, 0, prio, n, now, deadline, costs=costs)
            tasks[tid] = task
            order[tid] = []
            s.submit(task, now)
        rt_live = s.state.rt_active()
        plan = s.plan(now)
        assert not (plan.reset_be or plan.preempt_be)
        assert all(x.form is Form.PLAIN and x.pad is None for x in plan.launches)
        assert s.state.inflight(Stream.BE) <= cap
        if rt_live:
            for x in plan.launches:
                if x.stream is Stream.BE:
                    co_run += 1
                    c = tasks[x.task_id].costs[x.call_index]
                    assert x.n_calls == 1 and c.compute_bound is not None
                    assert c.n_vb <= 32 and c.vb_us <= 0.025 * 8 * 200.0
        device.apply(plan)
        out = device.tick()
        for c in out:
            assert c.status is OK
            assert c.call_index == len(order[c.task_id]), "out of order"
            order[c.task_id] += range(c.call_index, c.call_index + c.n_calls)
        s.on_complete(out, now)
        now += 1
    assert device.resets == 0 and device.preempted == 0
    for tid, task in tasks.items():
        assert task.state is TaskState.DONE
        assert order[tid] == list(range(task.n_calls))
    assert co_run > 0  # BE did run beside RT work
