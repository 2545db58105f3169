"""Trace arrivals in the virtual-time runner: a hand-made trace gives exactly
the expected requests and skips (looped past its period); ClientSpec refuses
bad traces. Hand-made graphs and costs on a 4-SM device."""

from __future__ import annotations

import pytest

from reefd.scheduler.padding import CallCost
from reefd.scheduler.plan import Completion
from reefd.scheduler.task import Priority
from reefd.sim.runner import ClientSpec, simulate
from tests.sim.helpers import SMALL_GPU, TableCosts, graph

RT_COST = CallCost(n_vb=16, registers=32, smem_bytes=0, vb_us=40.0)  # 40 us a call
RT_GRAPH = graph("rt", 10)  # 400 us alone
BE_GRAPH = graph("be", 20)
COSTS = TableCosts({"rt": RT_COST, "be": CallCost(32, 32, 0, 10.0)})

TRACE_S = (0.0, 0.0001, 0.0002, 0.001, 0.0012)
"""Looped every 2 ms: at 0 a request (400 us), 0.1 and 0.2 ms skipped; at 1.0
a request, 1.2 skipped."""


def _rt(trace_s=TRACE_S, period_s: float | None = 0.002) -> ClientSpec:
    return ClientSpec(
        "rt",
        RT_GRAPH,
        Priority.RT,
        "trace",
        slo_ms=1.0,
        trace_s=trace_s,
        trace_period_s=period_s,
    )


def test_a_trace_gives_exactly_the_expected_requests_and_skips() -> None:
    # 4.9 ms: the trace at 0, 2 and 4 ms; the last request ends at 4.4 ms.
    result = simulate([_rt()], "reef", SMALL_GPU, COSTS, 4_900.0, 2, seed=0)
    [client] = result.clients
    assert (client.issued, client.done, client.skipped) == (5, 5, 8)
    assert result.arrivals == 13
    assert set(client.latencies_us) == {400.0}
    assert client.slo_attainment == pytest.approx(5 / 13)


def test_trace_arrivals_beside_be_work_are_all_accounted_for() -> None:
    be = ClientSpec("be", BE_GRAPH, Priority.BE)
    seen: list[tuple[int, Completion]] = []
    result = simulate(
        [_rt(), be],
        "reef",
        SMALL_GPU,
        COSTS,
        19_900.0,
        2,
        seed=0,
        observe=lambda i, c: seen.append((i, c)),
    )
    rt, be_result = result.clients
    assert rt.issued + rt.skipped == result.arrivals == 50  # 5 per 2 ms
    assert rt.done <= rt.issued <= rt.done + 1
    assert be_result.done > 0
    assert {i for i, _ in seen} == {0, 1}
    assert all(c.end_us >= c.start_us for _, c in seen)


def test_the_trace_is_the_same_whatever_the_seed() -> None:
    runs = [
        simulate([_rt()], "reef", SMALL_GPU, COSTS, 4_900.0, 2, seed=s) for s in (0, 9)
    ]
    assert runs[0].clients[0].latencies_us == runs[1].clients[0].latencies_us
    assert runs[0].clients[0].skipped == runs[1].clients[0].skipped


@pytest.mark.parametrize(
    ("trace_s", "period_s", "match"),
    [
        ((), 0.002, "non-empty"),
        ((0.0, 0.001), None, "trace_period_s"),
        ((0.001, 0.0), 0.002, "sorted"),
        ((0.0, 0.002), 0.002, "sorted and in"),
    ],
)
def test_bad_traces_are_refused(trace_s, period_s, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _rt(trace_s, period_s)
