"""simulate(): DISB clients under each policy on the simulated GPU. Hand-made
graphs and costs on a 4-SM device, fixed seeds, 100 ms of virtual time each."""

from __future__ import annotations

import pytest

from reefd.scheduler import make_policy
from reefd.scheduler.padding import CallCost
from reefd.scheduler.task import Priority
from reefd.sim.runner import ClientSpec, SimResult, percentile, simulate
from tests.sim.helpers import SMALL_GPU, TableCosts, graph

RT_GRAPH = graph("rt", 10)
BE_GRAPH = graph("be", 20)
RT_COST = CallCost(n_vb=20, registers=32, smem_bytes=0, vb_us=20.0)  # 40 us a call
BE_COST = CallCost(n_vb=40, registers=32, smem_bytes=0, vb_us=10.0)  # 30 us a call
RT_ALONE_US = 10 * 2 * RT_COST.vb_us
DURATION_US = 100_000.0

RT = ClientSpec("rt", RT_GRAPH, Priority.RT, "uniform", 200.0, slo_ms=1.0)
BE = ClientSpec("be", BE_GRAPH, Priority.BE)


def _run(
    clients: list[ClientSpec],
    policy: str,
    be_vb_us: float = BE_COST.vb_us,
    cap: int = 2,
    seed: int = 7,
    **options,
) -> SimResult:
    be_cost = CallCost(BE_COST.n_vb, 32, 0, be_vb_us)
    costs = TableCosts({"rt": RT_COST, "be": be_cost})
    return simulate(
        clients, policy, SMALL_GPU, costs, DURATION_US, cap, seed, **options
    )


def test_rt_alone_takes_its_solo_time() -> None:
    result = _run([RT], "reef")
    [client] = result.clients
    assert client.issued == 20 and client.skipped == 0  # 200/s for 100 ms
    assert client.done >= 19  # the last may still be running at the end
    assert set(client.latencies_us) == {RT_ALONE_US}
    assert client.slo_attainment == 1.0
    assert result.done(Priority.BE) == 0


@pytest.mark.parametrize("policy", ["reef", "wait", "reset_hq", "streams", "fifo"])
def test_every_block_runs_exactly_once(policy: str) -> None:
    result = _run([RT, BE, BE], policy, cap=1, record_blocks=True)
    assert result.block_errors == ()
    assert result.blocks_per_call
    want = {"rt": RT_COST.n_vb, "be": BE_COST.n_vb}
    assert set(result.blocks_per_call.values()) == set(want.values())
    assert result.done(Priority.BE) > 50 and result.done(Priority.RT) >= 19


def test_preempted_be_tasks_resume_and_finish_their_work() -> None:
    result = _run([RT, BE], "reef", record_blocks=True)
    be = result.clients[1]
    assert be.preemptions >= 15  # nearly every RT arrival hits a running BE task
    assert len(result.preemption_latencies_us) >= 15
    assert result.block_errors == ()
    per_task: dict[int, int] = {}
    for (task, _call), blocks in (result.blocks_per_call or {}).items():
        per_task[task] = per_task.get(task, 0) + blocks
    be_totals = {v for v in per_task.values() if v != 10 * RT_COST.n_vb}
    assert be_totals == {20 * BE_COST.n_vb}


def test_rt_tail_is_lower_under_reef_than_fifo() -> None:
    reef = _run([RT, BE], "reef")
    fifo = _run([RT, BE], "fifo")
    assert reef.percentile_us("rt", 99) < fifo.percentile_us("rt", 99)
    assert reef.percentile_us("rt", 99) <= RT_ALONE_US + BE_COST.vb_us
    assert fifo.percentile_us("rt", 99) > RT_ALONE_US + 10 * BE_COST.vb_us
    assert reef.be_throughput_per_s > 0.5 * fifo.be_throughput_per_s


def test_preemption_latency_ordering() -> None:
    """reef stops BE at a block boundary; reset_hq lets the running kernel
    finish; wait also lets queued kernels run."""
    reef = _run([RT, BE], "reef", cap=4)
    reset_hq = _run([RT, BE], "reset_hq", cap=4)
    wait = _run([RT, BE], "wait", cap=4)
    runs = (reef, reset_hq, wait)
    p99 = {r.policy: percentile(r.preemption_latencies_us, 99) for r in runs}
    p50 = {r.policy: percentile(r.preemption_latencies_us, 50) for r in runs}
    # wait is timed too: from RT's plan until its BE launches have run out
    assert p99["reef"] <= BE_COST.vb_us < p99["reset_hq"] <= p99["wait"]
    assert p50["reset_hq"] < p50["wait"]
    drain = {r.policy: percentile(r.be_drain_us, 50) for r in runs}
    assert drain["reef"] <= BE_COST.vb_us < drain["reset_hq"] < drain["wait"]


def test_padding_happens_when_costs_are_known() -> None:
    # Two BE clients and a cap of 1: one BE task waits with nothing in flight,
    # so reef can pad RT calls with it.
    padded = _run([RT, BE, BE], "reef", cap=1)
    unpadded = _run([RT, BE, BE], "reef", cap=1, task_costs=False)
    assert padded.padded_launches > 0 and unpadded.padded_launches == 0
    assert padded.padded_be_blocks > 0  # the slices did BE work
    for policy in ("wait", "reset_hq", "streams"):  # only reef pads
        assert _run([RT, BE, BE], policy, cap=1).padded_launches == 0
    assert padded.block_errors == ()


@pytest.mark.parametrize("be_vb_us", [3.0, 10.0, 19.0])
def test_padding_costs_rt_at_most_one_be_block_per_padded_call(be_vb_us) -> None:
    padded = _run([RT, BE, BE], "reef", be_vb_us, cap=1)
    unpadded = _run([RT, BE, BE], "reef", be_vb_us, cap=1, task_costs=False)
    rt_tasks = padded.clients[0].issued
    assert 0 < padded.padded_launches <= rt_tasks  # at most one per RT task here
    worst = max(padded.latencies_us("rt")) - max(unpadded.latencies_us("rt"))
    assert worst <= be_vb_us


def test_open_loop_arrivals_while_busy_are_skipped() -> None:
    fast = ClientSpec("rt", RT_GRAPH, Priority.RT, "poisson", 5000.0, slo_ms=1.0)
    result = _run([fast], "reef")
    [client] = result.clients
    assert client.skipped > 0
    assert client.done + client.skipped + 1 >= result.arrivals - 1
    assert client.issued == client.done + (client.issued - client.done)
    assert client.done <= DURATION_US / RT_ALONE_US


def test_same_seed_same_result_and_seed_matters() -> None:
    clients = [RT, ClientSpec("rt2", RT_GRAPH, "rt", "poisson", 300.0, 2.0), BE, BE]
    one = _run(clients, "reef", cap=1, seed=3, record_blocks=True)
    two = _run(clients, "reef", cap=1, seed=3, record_blocks=True)
    other = _run(clients, "reef", cap=1, seed=4, record_blocks=True)
    assert one == two
    assert one.clients[0].latencies_us != other.clients[0].latencies_us


def test_wave_aggregation_does_not_change_results() -> None:
    clients = [RT, BE, BE]
    fast = _run(clients, "reef", cap=1, record_blocks=True)
    slow = _run(clients, "reef", cap=1, record_blocks=True, aggregate_waves=False)
    assert fast.clients == slow.clients
    assert fast.preemption_latencies_us == slow.preemption_latencies_us
    assert fast.device_events < slow.device_events


@pytest.mark.parametrize("policy", ["reef", "wait", "reset_hq", "streams", "fifo"])
def test_runs_fast_forwarded_alone_give_the_call_by_call_results(policy: str) -> None:
    """With a large BE cap the scheduler issues runs of many calls; alone on
    the device a run is one span, cut when RT arrives. Per-wave simulation
    (no aggregation, no spans) must give exactly the same results."""
    clients = [RT, BE, BE]
    fast = _run(clients, policy, cap=16, record_blocks=True)
    slow = _run(clients, policy, cap=16, record_blocks=True, aggregate_waves=False)
    assert fast.spans > 0 and slow.spans == 0
    if policy != "fifo":  # fifo runs everything on one stream, in order
        assert fast.splits > 0  # spans and groups were cut by RT arrivals
    assert fast.clients == slow.clients
    assert fast.blocks_per_call == slow.blocks_per_call
    assert fast.block_errors == slow.block_errors == ()
    assert fast.preemption_latencies_us == slow.preemption_latencies_us
    assert fast.occupancy == pytest.approx(slow.occupancy, rel=1e-9)
    assert fast.device_events < slow.device_events / 5


def test_client_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        ClientSpec("m", RT_GRAPH, "be", "uniform")
    with pytest.raises(ValueError, match="slo_ms"):
        ClientSpec("m", RT_GRAPH, "rt")
    with pytest.raises(ValueError, match="arrival"):
        ClientSpec("m", RT_GRAPH, "be", "bursty", 1.0)  # type: ignore[arg-type]


def test_an_earlier_deadline_rt_request_overtakes_a_long_one() -> None:
    """A short RT model with a tight SLO beside a long one with a loose SLO:
    letting the earlier deadline drop the long task's queued calls keeps the
    short one's tail near its solo time; every block still runs once."""
    long_graph, short_graph = graph("long", 40), graph("short", 2)
    costs = TableCosts({"long": RT_COST, "short": RT_COST})
    clients = [
        ClientSpec("long", long_graph, Priority.RT, "uniform", 100.0, slo_ms=20.0),
        ClientSpec("short", short_graph, Priority.RT, "poisson", 300.0, slo_ms=0.2),
    ]

    def run(preempts_rt: bool) -> SimResult:
        policy = make_policy("reef", device=SMALL_GPU)
        policy.preempts_rt = preempts_rt
        return simulate(
            clients, policy, SMALL_GPU, costs, DURATION_US, 2, 3, record_blocks=True
        )

    on, off = run(True), run(False)
    short_on, short_off = on.clients[1], off.clients[1]
    assert on.block_errors == off.block_errors == ()
    assert short_on.slo_attainment > short_off.slo_attainment
    assert percentile(short_on.latencies_us, 99) < percentile(
        short_off.latencies_us, 99
    )
    assert on.clients[0].done >= off.clients[0].done - 1  # the long one still runs
