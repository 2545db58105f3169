"""The orion baseline on the simulated GPU, and the compute/memory class the
roofline gives each call. Hand-made graphs and costs on the 4-SM device, with
a co-run slowdown that only same-class neighbours cause (Orion's premise)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from reefd.scheduler.orion import OrionPolicy
from reefd.scheduler.padding import CallCost
from reefd.scheduler.task import Priority
from reefd.sim.costs import H100_ROOFLINE, RooflineCosts
from reefd.sim.records import Running
from reefd.sim.runner import ClientSpec, SimResult, simulate
from reefd.sim.shapes import h100_shape
from tests.sim.helpers import SMALL_GPU, TableCosts, graph

RT_COST = CallCost(4, 32, 0, 40.0, compute_bound=False)  # 1 SM, 40 us
BE_COMPUTE = CallCost(4, 32, 0, 8.0, compute_bound=True)  # 1 SM, 8 us
BE_MEMORY = CallCost(4, 32, 0, 8.0, compute_bound=False)
RT_ALONE_US = 10 * RT_COST.vb_us  # 400 us: BE beside it is held to 10 us
DURATION_US = 100_000.0

RT = ClientSpec("rt", graph("rt", 10), Priority.RT, "uniform", 200.0, slo_ms=1.0)
BE_C = ClientSpec("be_c", graph("be_c", 20), Priority.BE)  # compute-bound
BE_M = ClientSpec("be_m", graph("be_m", 20), Priority.BE)  # memory-bound
COSTS = TableCosts({"rt": RT_COST, "be_c": BE_COMPUTE, "be_m": BE_MEMORY})


def same_class_slowdown(own: Running, co_running: Sequence[Running]) -> float:
    """Twice as slow beside a call of the same class; unhurt beside the other."""
    kinds = {other.cost.compute_bound for other in co_running}
    return 2.0 if own.cost.compute_bound in kinds else 1.0


def _run(policy: str, clients=(RT, BE_C, BE_M), cap: int = 2, **options) -> SimResult:
    chosen = OrionPolicy(device=SMALL_GPU) if policy == "orion" else policy
    options.setdefault("slowdown", same_class_slowdown)
    return simulate(
        list(clients), chosen, SMALL_GPU, COSTS, DURATION_US, cap, 7, **options
    )


def test_every_block_runs_exactly_once_and_be_co_runs() -> None:
    result = _run("orion", (RT, BE_C, BE_M), cap=1, record_blocks=True)
    assert result.block_errors == ()
    assert result.blocks_per_call
    assert set(result.blocks_per_call.values()) == {4}
    assert result.done(Priority.RT) >= 19 and result.done(Priority.BE) > 50
    assert result.preemption_latencies_us == ()  # never yields, resets or preempts
    assert result.padded_launches == 0


def test_rt_tail_sits_between_wait_and_blind_co_running() -> None:
    """orion keeps memory-bound BE calls away from the memory-bound RT task
    (streams does not; fifo queues RT behind BE) and still runs the
    compute-bound BE client beside it (wait runs no BE beside RT)."""
    runs = {p: _run(p) for p in ("orion", "wait", "streams", "fifo")}
    p99 = {p: r.percentile_us("rt", 99) for p, r in runs.items()}
    assert p99["wait"] <= p99["orion"] < p99["streams"]
    assert p99["orion"] < p99["fifo"]
    # Only the BE call already running when RT arrives can slow it: one RT
    # call (its blocks are slowed from dispatch) at twice its time.
    assert p99["orion"] <= RT_ALONE_US + RT_COST.vb_us
    done = {p: [c.done for c in r.clients] for p, r in runs.items()}
    assert done["orion"][1] > 1.1 * done["wait"][1]  # the compute-bound client
    assert done["orion"][2] >= 0.95 * done["wait"][2]  # the memory-bound one


def test_without_costs_orion_is_wait() -> None:
    orion = _run("orion", task_costs=False)
    wait = _run("wait", task_costs=False)
    assert orion.clients == wait.clients


def test_runs_fast_forwarded_alone_give_the_call_by_call_results() -> None:
    fast = _run("orion", (RT, BE_C, BE_M), cap=16, record_blocks=True)
    slow = _run(
        "orion", (RT, BE_C, BE_M), cap=16, record_blocks=True, aggregate_waves=False
    )
    assert fast.spans > 0 and slow.spans == 0
    assert fast.clients == slow.clients
    assert fast.blocks_per_call == slow.blocks_per_call
    assert fast.block_errors == slow.block_errors == ()


def test_roofline_classes_gemm_as_compute_and_the_rest_as_memory_bound() -> None:
    from reefd.sim.workloads import zoo_graph

    assert H100_ROOFLINE.ridge_flops_per_byte() == pytest.approx(12.48, abs=0.01)
    assert H100_ROOFLINE.ridge_flops_per_byte(tensor=True) == pytest.approx(
        184.5, abs=0.1
    )
    g = zoo_graph("vgg19", reduced=False)
    costs = RooflineCosts(h100_shape()).costs(g)
    kinds = {
        (c.kernel, cost.compute_bound) for c, cost in zip(g.calls, costs, strict=True)
    }
    # batch 1: the classifier's linears are matrix-vector products
    assert kinds == {
        ("conv2d", True),
        ("max_pool2d", False),
        ("adaptive_avg_pool2d", False),
        ("linear", False),
    }
    relu = RooflineCosts(h100_shape()).costs(graph("g", 1))
    assert relu[0].compute_bound is False


def test_the_daemon_hands_orion_the_device(sock_path: str) -> None:
    from reefd.__main__ import build
    from reefd.config import load

    daemon = build(load(None, socket_path=sock_path, backend="sim", policy="orion"))
    assert isinstance(daemon.policy, OrionPolicy)
    assert daemon.policy._device is None  # no I/O before start
    daemon.start()
    try:
        assert daemon.policy._device == daemon.device.shape()
    finally:
        daemon.stop(grace_ms=0)
