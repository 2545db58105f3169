"""Every DISB workload (and AZURE) on the virtual-time simulator, reduced
models, a short run each: per client, requests issued, done and skipped add
up; open-loop arrivals (uniform, poisson, trace) are all counted, as issued
or skipped; trace clients see exactly their trace's arrivals. Lowering the
five reduced models is most of the time (they are cached per process)."""

from __future__ import annotations

import pytest

from bench.workloads import WORKLOADS
from reefd.scheduler.task import Priority
from reefd.sim.costs import RooflineCosts
from reefd.sim.runner import simulate
from reefd.sim.shapes import h100_shape
from reefd.sim.workloads import workload

DURATION_S = 0.25


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_workload_accounts_for_every_request(name: str) -> None:
    shape = h100_shape()
    costs = RooflineCosts(shape)
    specs = workload(name, costs, shape, reduced=True)
    templates = WORKLOADS[name]
    assert [s.model_name for s in specs] == [t.model for t in templates]
    result = simulate(specs, "reef", shape, costs, DURATION_S * 1e6, 2, seed=1)
    open_loop = 0
    for client, t in zip(result.clients, templates, strict=True):
        assert client.done <= client.issued <= client.done + 1, client
        assert len(client.latencies_us) == client.done
        if t.arrival == "closed":
            assert client.skipped == 0
        else:
            open_loop += client.issued + client.skipped
        if t.trace is not None:
            offered = len(t.trace.arrivals_s(DURATION_S))
            assert client.issued + client.skipped == offered, client
        if t.arrival in ("uniform", "poisson"):
            assert t.rate_per_s
            expected = t.rate_per_s * DURATION_S
            slack = 1 if t.arrival == "uniform" else 4 * expected**0.5 + 1
            assert abs(client.issued + client.skipped - expected) <= slack
    assert open_loop == result.arrivals
    assert result.done(Priority.RT) > 0
    rt_closed = any(
        t.priority is Priority.RT and t.arrival == "closed" for t in templates
    )
    if not rt_closed:  # (a closed-loop RT client may starve BE under reef: B)
        assert result.done(Priority.BE) > 0
    assert result.block_errors == ()
