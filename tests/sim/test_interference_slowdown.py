"""The simulator's co-run slowdown from an interference model: blocks slow by
the predicted factors only while RT and BE work overlap. The table is a
stand-in with fixed predictions (tests/unit/test_interference_daemon.py uses
a trained one)."""

from __future__ import annotations

from typing import NamedTuple

from reefd.backends.device import DeviceLaunch, PadLaunch
from reefd.backends.sim import SimDevice
from reefd.profiler.identity import graph_key
from reefd.scheduler.padding import CallCost
from reefd.scheduler.plan import Completion, Form, Stream
from reefd.sim.interference import ModelSlowdown
from reefd.sim.records import Running, no_slowdown
from tests.sim.helpers import SMALL_GPU, TableCosts, graph

RT = CallCost(n_vb=4, registers=32, smem_bytes=0, vb_us=10.0)  # one round of 4
BE = CallCost(n_vb=8, registers=32, smem_bytes=0, vb_us=5.0)


class Prediction(NamedTuple):
    rt_slowdown: float
    rt_upper: float
    be_ratio: float


class FixedTable:
    """Every pair predicted the same; pairs with an unknown key are unknown."""

    def __init__(self, known: set[str], rt_slowdown: float, be_ratio: float):
        self.known = known
        self.prediction = Prediction(rt_slowdown, rt_slowdown, be_ratio)

    def lookup(self, rt_key: str, be_key: str) -> Prediction | None:
        if rt_key in self.known and be_key in self.known:
            return self.prediction
        return None


def _padded_run(slowdown) -> list[Completion]:
    device = SimDevice(SMALL_GPU, TableCosts({"rt": RT, "be": BE}), slowdown)
    rt_model = device.load(graph("rt", 1), {}, {})
    be_model = device.load(graph("be", 1), {}, {})
    rt_memory, be_memory = device.alloc(rt_model, []), device.alloc(be_model, [])
    pad = PadLaunch(2, 0, BE.n_vb, be_model, be_memory)
    device.launch(DeviceLaunch(1, 0, Stream.RT, Form.PADDED, rt_model, rt_memory, pad))
    out = []
    while (t := device.next_event_ns()) is not None:
        device.advance(t)
        out += device.poll()
    return out


def test_both_halves_of_a_padded_launch_slow_by_the_predictions() -> None:
    solo = _padded_run(no_slowdown)
    key = graph_key(graph("rt", 1))  # both test graphs have the same kernels
    table = FixedTable({key}, rt_slowdown=1.5, be_ratio=0.5)
    slowed = _padded_run(ModelSlowdown(table))
    rt_solo, be_solo = (c.end_us for c in solo)
    rt_slow, be_slow = (c.end_us for c in slowed)
    assert rt_solo == RT.vb_us and rt_slow == 1.5 * RT.vb_us
    assert be_slow > be_solo  # BE blocks ran at half speed while RT ran


def test_unknown_pairs_alone_and_like_with_like_run_at_solo_speed() -> None:
    solo = _padded_run(no_slowdown)
    unknown = _padded_run(ModelSlowdown(FixedTable(set(), 3.0, 0.1)))
    assert [c.end_us for c in unknown] == [c.end_us for c in solo]
    hook = ModelSlowdown(FixedTable({"a", "b"}, 3.0, 0.25))
    rt, be = Running("a", True, RT), Running("b", False, BE)
    assert hook(rt, []) == 1.0
    assert hook(rt, [Running("b", True, BE)]) == 1.0  # RT beside RT: not scored
    assert hook(rt, [be]) == 3.0 and hook(be, [rt]) == 4.0
    assert ModelSlowdown(FixedTable({"a", "b"}, 0.8, 2.0))(rt, [be]) == 1.0
