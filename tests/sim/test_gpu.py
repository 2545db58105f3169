"""The simulated GPU on its own: forms, preemption, padding, priorities, drops,
and wave aggregation equal to per-wave simulation. Hand-made costs, no torch."""

from __future__ import annotations

import random

import pytest

from reefd.backends.device import DeviceLaunch, PadLaunch
from reefd.backends.sim import SimDevice
from reefd.scheduler.padding import CallCost, DeviceShape, budget_vbs
from reefd.scheduler.plan import Completion, CompletionStatus, Form, Stream
from tests.sim.helpers import SMALL_GPU, TableCosts, graph

OK = CompletionStatus.OK
PREEMPTED = CompletionStatus.PREEMPTED

BE = CallCost(n_vb=40, registers=32, smem_bytes=0, vb_us=10.0)  # 16 slots
RT = CallCost(n_vb=20, registers=32, smem_bytes=0, vb_us=5.0)


def _device(aggregate: bool = True, **table: CallCost) -> SimDevice:
    costs = TableCosts({"be": BE, "rt": RT, **table})
    return SimDevice(SMALL_GPU, costs, aggregate_waves=aggregate)


def _task(device: SimDevice, name: str, n_calls: int = 2):
    model = device.load(graph(name, n_calls), {}, {})
    return model, device.alloc(model, [])


def _run_until_idle(device: SimDevice) -> list[Completion]:
    out = []
    while (t := device.next_event_ns()) is not None:
        device.advance(t)
        out += device.poll()
    return out


def _at(device: SimDevice, t_us: float) -> list[Completion]:
    """Advance to `t_us`, returning completions on the way."""
    out = []
    target = round(t_us * 1000)
    while (t := device.next_event_ns()) is not None and t <= target:
        device.advance(t)
        out += device.poll()
    device.advance(target)
    return out


@pytest.mark.parametrize("aggregate", [True, False])
def test_preempted_kernel_resumes_without_running_a_block_twice(aggregate) -> None:
    device = _device(aggregate)
    model, memory = _task(device, "be")
    launch = DeviceLaunch(1, 0, Stream.BE, Form.PREEMPTIBLE, model, memory)
    device.launch(launch)
    assert _at(device, 12.0) == []
    device.set_preempt(True)  # rounds of 16 blocks: the one from 10 to 20 us ends
    [c] = _run_until_idle(device)
    assert (c.status, c.start_us, c.end_us) == (PREEMPTED, 0.0, 20.0)
    assert memory.counters[0] == memory.blocks_run[0] == 32
    device.set_preempt(False)
    device.launch(launch)
    [c] = _run_until_idle(device)
    assert (c.status, c.start_us, c.end_us) == (OK, 20.0, 30.0)  # 8 blocks left
    assert memory.counters[0] == memory.blocks_run[0] == BE.n_vb


def test_preemptible_launch_of_a_finished_call_completes_at_once() -> None:
    device = _device()
    model, memory = _task(device, "be")
    memory.counters[0] = BE.n_vb
    device.launch(DeviceLaunch(1, 0, Stream.BE, Form.PREEMPTIBLE, model, memory))
    assert [c.status for c in device.poll()] == [OK]
    assert memory.blocks_run.get(0, 0) == 0


def test_plain_kernel_ignores_the_preempt_flag() -> None:
    device = _device()
    model, memory = _task(device, "be")
    device.launch(DeviceLaunch(1, 0, Stream.BE, Form.PLAIN, model, memory))
    _at(device, 5.0)
    device.set_preempt(True)
    [c] = _run_until_idle(device)
    assert (c.status, c.end_us) == (OK, 30.0)
    assert memory.blocks_run[0] == BE.n_vb


def test_drop_queued_takes_only_what_has_not_started() -> None:
    device = _device()
    model, memory = _task(device, "be", n_calls=3)
    launches = [
        DeviceLaunch(1, i, Stream.BE, Form.PREEMPTIBLE, model, memory) for i in range(3)
    ]
    for launch in launches:
        device.launch(launch)
    _at(device, 1.0)
    assert device.drop_queued(Stream.BE) == launches[1:]
    assert device.drop_queued(Stream.BE) == []
    assert device.drop_queued(Stream.RT) == []
    [c] = _run_until_idle(device)
    assert (c.call_index, c.status, c.end_us) == (0, OK, 30.0)
    assert memory.blocks_run == {0: BE.n_vb}
    assert not device.busy()


def test_rt_blocks_are_placed_before_waiting_be_blocks() -> None:
    device = _device()
    be_model, be_memory = _task(device, "be")
    rt_model, rt_memory = _task(device, "rt")
    device.launch(DeviceLaunch(1, 0, Stream.BE, Form.PLAIN, be_model, be_memory))
    _at(device, 4.0)
    device.launch(DeviceLaunch(2, 0, Stream.RT, Form.PLAIN, rt_model, rt_memory))
    done = {c.task_id: c for c in _run_until_idle(device)}
    # BE holds all 16 slots until 10 us; then RT takes 16, and its last 4
    # blocks go first when those end at 15 us; BE gets the rest.
    assert (done[2].start_us, done[2].end_us) == (10.0, 20.0)
    assert done[1].end_us == 35.0  # 24 BE blocks left at 10 us: 12, 4, then 8
    assert be_memory.blocks_run[0] == BE.n_vb


def test_streams_run_one_kernel_at_a_time() -> None:
    device = _device()
    model, memory = _task(device, "rt", n_calls=3)
    for i in range(3):
        device.launch(DeviceLaunch(1, i, Stream.RT, Form.PLAIN, model, memory))
    done = _run_until_idle(device)
    assert [(c.call_index, c.start_us, c.end_us) for c in done] == [
        (0, 0.0, 10.0),
        (1, 10.0, 20.0),
        (2, 20.0, 30.0),
    ]


def test_padded_launch_runs_a_budgeted_be_slice_in_idle_slots() -> None:
    device = _device()
    rt_model, rt_memory = _task(device, "rt")
    be_model, be_memory = _task(device, "be")
    # The padding rule refuses this pair (a 10 us BE block outlasts a 5 us RT
    # block); the device must still run whatever budget a launch carries.
    assert budget_vbs(RT, BE, SMALL_GPU) == 0
    budget = 6
    pad = PadLaunch(2, 0, budget, be_model, be_memory)
    device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PADDED, rt_model, rt_memory, pad))
    done = _run_until_idle(device)
    assert [(c.task_id, c.status) for c in done] == [(1, OK), (2, PREEMPTED)]
    # RT alone ends at 10 us; the 6 BE blocks (10 us each) start at 5 us.
    assert done[0].end_us == done[1].end_us == 15.0
    assert done[0].end_us <= 10.0 + BE.vb_us
    assert be_memory.counters[0] == be_memory.blocks_run[0] == budget
    assert rt_memory.blocks_run[0] == RT.n_vb
    assert device.gpu.stats.padded_launches == 1


def test_padded_launch_finishing_the_be_call_reports_ok() -> None:
    device = _device()
    rt_model, rt_memory = _task(device, "rt")
    be_model, be_memory = _task(device, "be")
    be_memory.counters[0] = BE.n_vb - 2
    pad = PadLaunch(2, 0, 6, be_model, be_memory)
    device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PADDED, rt_model, rt_memory, pad))
    done = _run_until_idle(device)
    assert [(c.task_id, c.status) for c in done] == [(1, OK), (2, OK)]
    assert be_memory.blocks_run[0] == 2


def test_padded_launch_uses_merged_resources() -> None:
    heavy = CallCost(n_vb=40, registers=128, smem_bytes=0, vb_us=1.0)  # 2 per SM
    device = _device(heavy=heavy)
    rt_model, rt_memory = _task(device, "rt")
    be_model, be_memory = _task(device, "heavy")
    pad = PadLaunch(2, 0, 1, be_model, be_memory)
    device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PADDED, rt_model, rt_memory, pad))
    done = _run_until_idle(device)
    assert done[0].end_us == 15.0  # 20 RT blocks on 8 merged slots: 3 waves


def test_preempt_flag_stops_the_be_half_of_a_padded_launch() -> None:
    device = _device()
    rt_model, rt_memory = _task(device, "rt")
    be_model, be_memory = _task(device, "be")
    pad = PadLaunch(2, 0, 6, be_model, be_memory)
    device.set_preempt(True)
    device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PADDED, rt_model, rt_memory, pad))
    done = _run_until_idle(device)
    assert [(c.task_id, c.status, c.end_us) for c in done] == [
        (1, OK, 10.0),
        (2, PREEMPTED, 10.0),
    ]
    assert be_memory.counters.get(0, 0) == 0


def test_a_kernel_that_cannot_fit_fails() -> None:
    shape = DeviceShape(4, lambda registers, smem: 0 if smem > 64 * 1024 else 4)
    costs = TableCosts({"huge": CallCost(4, 32, 100 * 1024, 1.0)})
    device = SimDevice(shape, costs)
    model, memory = _task(device, "huge")
    device.launch(DeviceLaunch(1, 0, Stream.BE, Form.PLAIN, model, memory))
    [c] = device.poll()
    assert c.status is CompletionStatus.FAILED and "does not fit" in c.error


def _random_trace(aggregate: bool, seed: int) -> tuple[list, dict]:
    """Random launches, preempt toggles and drops at random times."""
    rng = random.Random(seed)
    costs = {
        "a": CallCost(37, 32, 0, 3.0),
        "b": CallCost(9, 128, 0, 7.5),
        "c": CallCost(50, 64, 70 * 1024, 2.25),
    }
    device = SimDevice(SMALL_GPU, TableCosts(costs), aggregate_waves=aggregate)
    tasks = {}
    for i, name in enumerate("abcabc"):
        model = device.load(graph(name, 30), {}, {})
        tasks[i] = (model, device.alloc(model, []))
    next_call = dict.fromkeys(tasks, 0)
    out: list = []
    t = 0.0
    for _ in range(120):
        t += rng.choice([0.5, 1.0, 3.3, 10.0, 25.0])
        out += _at(device, t)
        action = rng.random()
        if action < 0.6:
            tid = rng.randrange(6)
            stream = rng.choice([Stream.RT, Stream.BE])
            form = rng.choice([Form.PLAIN, Form.PREEMPTIBLE, Form.PADDED])
            model, memory = tasks[tid]
            pad = None
            if form is Form.PADDED:
                other = (tid + 1) % 6
                pad = PadLaunch(other, 0, rng.randint(1, 8), *tasks[other])
            call = next_call[tid] % 30
            next_call[tid] += 1
            device.launch(DeviceLaunch(tid, call, stream, form, model, memory, pad))
        elif action < 0.8:
            device.set_preempt(rng.random() < 0.5)
        else:
            out += [
                ("dropped", d.task_id, d.call_index)
                for d in device.drop_queued(rng.choice([Stream.RT, Stream.BE]))
            ]
    device.set_preempt(False)
    out += _run_until_idle(device)
    blocks = {tid: dict(memory.blocks_run) for tid, (_, memory) in tasks.items()}
    return out, blocks


@pytest.mark.parametrize("seed", range(6))
def test_wave_aggregation_equals_per_wave_simulation(seed: int) -> None:
    assert _random_trace(True, seed) == _random_trace(False, seed)
