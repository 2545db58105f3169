"""Dynamic kernel padding: the budget rule, the choice, and the scheduler's
bookkeeping of the BE slice a padded RT launch carries."""

from __future__ import annotations

import random

import pytest

from reefd.scheduler import make_policy
from reefd.scheduler.padding import (
    CallCost,
    DeviceShape,
    FitIndex,
    SoloIndex,
    budget_vbs,
    pad_calls,
)
from reefd.scheduler.plan import Completion, CompletionStatus, Form, PadSlice, Stream
from reefd.scheduler.reef import ReefPolicy
from reefd.scheduler.scheduler import Scheduler
from reefd.scheduler.task import Priority, Task, TaskState

OK = CompletionStatus.OK
PREEMPTED = CompletionStatus.PREEMPTED


def occupancy(registers: int, smem_bytes: int) -> int:
    """A toy SM: 64K registers, 228 KB shared memory, 256-thread CTAs, max 8."""
    by_regs = 65536 // (max(registers, 1) * 256)
    by_smem = (228 * 1024) // max(smem_bytes, 1) if smem_bytes else 8
    return min(8, by_regs, by_smem)


H100ish = DeviceShape(sms=132, ctas_per_sm=occupancy)


def cost(n_vb: int, registers: int = 32, smem: int = 0, vb_us: float = 10.0):
    return CallCost(n_vb, registers, smem, vb_us)


def test_idle_slots_of_a_small_rt_kernel_become_the_be_budget():
    rt = cost(100)  # 100 blocks on 132 x 8 slots: one wave of 10 us
    assert budget_vbs(rt, cost(5000), H100ish) == 132 * 8 - 100
    assert budget_vbs(rt, cost(30), H100ish) == 30  # capped at the BE call's blocks
    assert budget_vbs(rt, cost(5000, vb_us=5.0), H100ish) == 2 * (132 * 8 - 100)


def test_no_budget_when_it_would_hurt_the_rt_kernel():
    rt = cost(100, registers=32)
    assert budget_vbs(rt, cost(500, registers=128), H100ish) == 0  # occupancy 8 -> 2
    assert budget_vbs(rt, cost(500, vb_us=11.0), H100ish) == 0  # outlasts RT
    full = cost(132 * 8)  # a full wave leaves no slot idle
    assert budget_vbs(full, cost(500), H100ish) == 0


def _task(task_id: int, priority: Priority, n_calls: int, costs, **kw) -> Task:
    kw.setdefault("client_id", task_id)
    return Task(
        task_id=task_id,
        model_id=0,
        priority=priority,
        n_calls=n_calls,
        arrival_us=0,
        deadline_us=1000 if priority is Priority.RT else None,
        costs=costs,
        **kw,
    )


def test_each_call_gets_the_first_candidate_that_fits_and_each_pads_once():
    index = FitIndex(H100ish)
    a = _task(1, Priority.BE, 2, None)
    b = _task(2, Priority.BE, 2, None)
    c = _task(3, Priority.BE, 2, None)
    rt = (cost(100), cost(100), cost(100))
    pads = pad_calls(rt, 0, 3, [(a, cost(50)), (b, cost(50))], index)
    assert pads == [(0, PadSlice(1, 0, 50)), (1, PadSlice(2, 0, 50))]
    too_big = (a, cost(50, registers=255))  # would lower the RT occupancy
    pads = pad_calls(rt, 0, 1, [too_big, (b, cost(50))], index)
    assert pads == [(0, PadSlice(2, 0, 50))]
    # a BE block longer than the RT blocks of calls 0 and 1 fits only call 2
    slow_first = (cost(100, vb_us=5.0), cost(100, vb_us=5.0), cost(100))
    pads = pad_calls(slow_first, 0, 3, [(c, cost(50, vb_us=8.0))], index)
    assert pads == [(2, PadSlice(3, 0, 50))]
    assert pad_calls(slow_first, 0, 2, [(c, cost(50, vb_us=8.0))], index) == []


def test_fit_index_agrees_with_the_budget_rule_call_by_call():
    rng = random.Random(3)
    index = FitIndex(H100ish, max_entries=3)
    shapes = [(32, 0), (64, 0), (128, 0), (32, 48 * 1024)]
    for _ in range(20):
        table = tuple(
            cost(
                rng.choice([100, 132 * 8, 2000]),
                *rng.choice(shapes),
                vb_us=rng.choice([2.0, 5.0, 10.0]),
            )
            for _ in range(rng.randint(1, 100))
        )
        be = cost(rng.randint(0, 50), *rng.choice(shapes), rng.choice([1.0, 5.0, 9.0]))
        for start in range(len(table) + 1):
            want = next(
                (
                    i
                    for i in range(start, len(table))
                    if budget_vbs(table[i], be, H100ish)
                ),
                None,
            )
            got = index.next_fit(table, be, start)
            assert (got if got < len(table) else None) == want


def test_reef_pads_with_the_lowest_predicted_interference_first():
    predicted = {10: (1.3, 1.3), 11: (1.1, 1.2), 12: (1.1, 1.1)}
    policy = ReefPolicy(H100ish, interference=lambda rt, be: predicted[be.task_id])
    s = Scheduler(policy, be_inflight_cap=2)
    for tid in (10, 11, 12):
        s.submit(_task(tid, Priority.BE, 2, (cost(50),) * 2), 0)
    s.submit(_task(1, Priority.RT, 4, (cost(100),) * 4), 0)
    p = s.plan(0)
    pads = [x.pad.task_id for x in p.launches if x.pad is not None]
    assert pads == [11, 12, 10]  # ties keep progress order (arrival here)
    assert [(x.call_index, x.n_calls) for x in p.launches] == [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 1),
    ]


def _padded_by(predicted: dict, deadline_us: int = 1000) -> list[int]:
    """BE tasks 10, 11, 12 (in progress order) and a 4-call RT task whose
    calls each take 10 us alone; which BE tasks pad it, in call order."""
    policy = ReefPolicy(H100ish, interference=lambda rt, be: predicted[be.task_id])
    s = Scheduler(policy, be_inflight_cap=2)
    for tid in (10, 11, 12):
        s.submit(_task(tid, Priority.BE, 2, (cost(50),) * 2), 0)
    rt = _task(1, Priority.RT, 4, (cost(100),) * 4)
    rt.deadline_us = deadline_us
    s.submit(rt, 0)
    return [x.pad.task_id for x in s.plan(0).launches if x.pad is not None]


def test_reef_withholds_be_whose_conservative_slowdown_breaks_the_slack():
    # 40 us of RT work alone, deadline at 60 us: a slowdown up to 1.5 is safe
    predicted = {10: (1.2, 1.6), 11: (1.4, 1.5), 12: None}
    assert _padded_by(predicted, deadline_us=60) == [11, 12]  # unknown ranks last
    assert _padded_by(predicted, deadline_us=1000) == [10, 11, 12]
    assert _padded_by(predicted, deadline_us=40) == [12]  # no slack at all


def test_solo_index_sums_the_rest_of_a_task():
    index = SoloIndex(H100ish)
    table = (cost(100), cost(132 * 8 * 3, vb_us=2.0), cost(10, vb_us=1.0))
    assert index.remaining_us(table, 0) == 10.0 + 6.0 + 1.0
    assert index.remaining_us(table, 2) == 1.0
    assert index.remaining_us(table, 3) == 0.0


def _sched(cap: int = 2) -> Scheduler:
    return Scheduler(make_policy("reef", device=H100ish), be_inflight_cap=cap)


def test_rt_launches_carry_be_slices_and_the_be_call_resumes_after_preemption():
    s = _sched()
    s.submit(_task(10, Priority.BE, 3, (cost(400),) * 3), 0)
    s.submit(_task(1, Priority.RT, 2, (cost(100),) * 2), 0)
    p = s.plan(0)
    assert [(x.task_id, x.call_index, x.form) for x in p.launches] == [
        (1, 0, Form.PADDED),
        (1, 1, Form.PLAIN),  # one slice per BE task: its calls stay in order
    ]
    assert p.launches[0].pad == PadSlice(10, 0, 400)
    be = s.task(10)
    assert (be.next_call, be.inflight) == (1, 1)
    assert s.state.inflight(Stream.RT) == 3 and s.state.inflight(Stream.BE) == 0
    # the slice ran out of budget part way: the BE call comes back PREEMPTED
    s.on_complete(
        [
            Completion(1, 0, OK),
            Completion(10, 0, PREEMPTED),
            Completion(1, 1, OK),
        ],
        5,
    )
    assert (be.next_call, be.done_calls, be.state) == (0, 0, TaskState.PREEMPTED)
    p = s.plan(6)  # RT done: BE resumes call 0 on its own stream
    assert [(x.task_id, x.call_index, x.n_calls, x.stream) for x in p.launches] == [
        (10, 0, 2, Stream.BE),
    ]


def test_no_padding_without_costs_or_for_baselines():
    s = _sched()
    s.submit(_task(10, Priority.BE, 3, None), 0)
    s.submit(_task(1, Priority.RT, 1, (cost(100),)), 0)
    assert {x.form for x in s.plan(0).launches} == {Form.PLAIN}
    for name in ("reset_hq", "wait"):
        base = Scheduler(make_policy(name), be_inflight_cap=2)
        base.submit(_task(10, Priority.BE, 3, (cost(400),) * 3), 0)
        base.submit(_task(1, Priority.RT, 1, (cost(100),)), 0)
        assert all(x.pad is None for x in base.plan(0).launches)


@pytest.mark.parametrize("seed", range(5))
def test_random_padded_runs_complete_every_call_once_in_order(seed):
    """RT and BE arrivals at random; every launch completes at once; a padded
    BE slice finishes its call or is PREEMPTED at random."""
    rng = random.Random(seed)
    s = _sched(cap=1)
    tasks: dict[int, Task] = {}
    order: dict[int, list[int]] = {}
    padded = 0
    now = 0
    while now < 400 or not s.idle:
        assert now < 5000, "did not drain"
        if now < 400 and rng.random() < 0.2:
            tid = len(tasks)
            prio = Priority.RT if rng.random() < 0.3 else Priority.BE
            n = rng.randint(1, 8)
            costs = tuple(cost(rng.choice([50, 300, 2000])) for _ in range(n))
            tasks[tid] = _task(tid, prio, n, costs, client_id=tid % 3)
            order[tid] = []
            s.submit(tasks[tid], now)
        out = []
        for launch in s.plan(now).launches:
            out.append(
                Completion(
                    launch.task_id, launch.call_index, OK, n_calls=launch.n_calls
                )
            )
            if launch.pad is not None:
                padded += 1
                status = OK if rng.random() < 0.5 else PREEMPTED
                out.append(
                    Completion(launch.pad.task_id, launch.pad.call_index, status)
                )
        for c in out:
            if c.status is OK:
                assert c.call_index == len(order[c.task_id]), "out of order"
                order[c.task_id] += range(c.call_index, c.call_index + c.n_calls)
        s.on_complete(out, now)
        now += 1
    assert padded > 0
    for tid, task in tasks.items():
        assert task.state is TaskState.DONE
        assert order[tid] == list(range(task.n_calls))


def test_budget_counts_whole_be_blocks_per_idle_slot_within_one_rt_block():
    rt = cost(100, vb_us=10.0)
    # 956 idle slots, each fits floor(10 / 3) = 3 BE blocks of 3 us: none ends
    # after the RT kernel's last block would.
    assert budget_vbs(rt, cost(10**6, vb_us=3.0), H100ish) == 956 * 3
    # A BE block longer than an RT block would outlast the RT kernel.
    two_waves = cost(132 * 8 + 1, vb_us=10.0)
    assert budget_vbs(two_waves, cost(10**6, vb_us=15.0), H100ish) == 0


def test_task_repr_does_not_print_its_costs():
    task = _task(1, Priority.BE, 2, (cost(5),) * 2000)
    assert "CallCost" not in repr(task) and len(repr(task)) < 400


def test_rt_calls_wait_in_a_window_while_be_drains_then_pad_with_it():
    s = _sched(cap=2)
    s.submit(_task(10, Priority.BE, 6, (cost(400),) * 6), 0)
    first = s.plan(0)
    assert [(x.call_index, x.n_calls) for x in first.launches] == [(0, 2)]
    s.submit(_task(1, Priority.RT, 40, (cost(100),) * 40), 1)
    p = s.plan(1)  # BE is still on the device: a window of RT calls, no pads
    assert p.reset_be and p.preempt_be
    assert [(x.call_index, x.n_calls, x.pad) for x in p.launches] == [
        (0, ReefPolicy.rt_window_calls, None)
    ]
    s.on_complete(
        [
            Completion(10, 0, OK),
            Completion(10, 1, PREEMPTED),
        ],
        2,
    )
    p = s.plan(2)  # BE is back: the rest of the RT task, its next call padded
    window = ReefPolicy.rt_window_calls
    assert [(x.call_index, x.n_calls) for x in p.launches] == [
        (window, 1),
        (window + 1, 40 - window - 1),
    ]
    assert p.launches[0].pad == PadSlice(10, 1, 400)
