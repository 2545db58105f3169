"""Cost sources: the roofline estimate from the catalog, and profiles read from
the SQLite store (with the roofline as fallback)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from reefd.profiler.identity import graph_key
from reefd.profiler.records import (
    CallFacts,
    CallProfile,
    Environment,
    ModelIdentity,
    TaskProfile,
)
from reefd.profiler.stats import Stats
from reefd.profiler.store import Store
from reefd.scheduler.padding import CallCost
from reefd.sim.costs import (
    DEFAULT_REGISTERS,
    H100_ROOFLINE,
    RooflineCosts,
    StoreCosts,
    solo_duration_us,
)
from reefd.sim.shapes import h100_shape
from tests.sim.helpers import graph

SHAPE = h100_shape()
SLOTS = 132 * 8  # 32 registers, no shared memory: 8 CTAs of 256 threads per SM


def test_roofline_of_a_memory_bound_kernel() -> None:
    numel = 1024 * SLOTS * 2  # exactly two waves of 1024-element blocks
    [cost] = set(RooflineCosts(SHAPE).costs(graph("g", 3, numel)))
    assert (cost.n_vb, cost.registers, cost.smem_bytes) == (2 * SLOTS, 32, 0)
    k = H100_ROOFLINE
    block_bytes = 2 * 1024 * 4  # read x, write y
    block_us = 1e6 * block_bytes / (k.hbm_bytes_per_s * k.memory_efficiency / SLOTS)
    assert cost.vb_us == pytest.approx(block_us + k.launch_overhead_us / 2)
    # Two waves of such blocks: the whole call moves 2 x numel x 4 bytes at
    # the efficient bandwidth, plus the launch overhead.
    call_us = 2 * numel * 4 / (k.hbm_bytes_per_s * k.memory_efficiency) * 1e6
    assert 2 * cost.vb_us == pytest.approx(call_us + k.launch_overhead_us)


def test_roofline_of_a_lowered_model() -> None:
    from reefd.sim.workloads import zoo_graph

    g = zoo_graph("vgg19", reduced=True)
    costs = RooflineCosts(SHAPE).costs(g)
    assert len(costs) == len(g.calls)
    for call, cost in zip(g.calls, costs, strict=True):
        want = 128 if call.kernel in ("conv2d", "linear") else DEFAULT_REGISTERS
        assert cost.registers == want
        assert cost.n_vb >= 1 and cost.vb_us > H100_ROOFLINE.launch_overhead_us / 100
    assert 0 < solo_duration_us(costs, SHAPE) < 10_000


def test_roofline_uses_compiled_resources_when_given() -> None:
    class Compiled:
        def of(self, spec, params, form):
            return type("R", (), {"registers": 255, "smem_bytes": 4096})()

    [cost] = set(RooflineCosts(SHAPE, resources=Compiled()).costs(graph("g", 2)))
    assert (cost.registers, cost.smem_bytes) == (255, 4096)


ENV = Environment(
    backend="cuda",
    device_name="NVIDIA H100 80GB HBM3",
    torch_version="2.x",
    reefd_version="0.1.0",
    python_version="3.11",
    hostname="host",
    cpu_model="cpu",
    cpu_count=2,
    torch_threads=1,
    resources_arch="sm_90",
)


def _profile(g, medians_us: list[float], registers: int | None) -> TaskProfile:
    model = ModelIdentity(graph_key(g), g.name, "test", {})
    calls = tuple(
        CallProfile(
            CallFacts(
                call_index=i,
                kernel="relu",
                variant="relu_body",
                form="preemptible",
                params={"numel": 1024 * 3000},
                n_vb=3000,
                flops=0,
                bytes_moved=0,
                registers=registers,
                smem_bytes=0 if registers else None,
            ),
            Stats.of([m]),
        )
        for i, m in enumerate(medians_us)
    )
    return TaskProfile(
        model=model,
        batch=1,
        graph_key=graph_key(g),
        duration=Stats.of([sum(medians_us)]),
        samples_us=(sum(medians_us),),
        calls=calls,
        warmup=1,
        weight_bytes=0,
        scratch_bytes=0,
    )


def _store(tmp_path: Path, env: Environment, *profiles: TaskProfile) -> Store:
    store = Store.open(tmp_path / "profiles.sqlite")
    run = store.begin_run(env, command="test", warmup=1, repeat=1)
    for p in profiles:
        store.add_task(run, p)
    return store


def test_store_costs_come_from_measured_medians(tmp_path: Path) -> None:
    measured = graph("measured", 2, numel=1024 * 3000)
    unseen = graph("unseen", 2, numel=1024 * 5)
    roofline = RooflineCosts(SHAPE)
    store = _store(tmp_path, ENV, _profile(measured, [30.0, 60.0], registers=64))
    costs = StoreCosts(store, SHAPE, roofline)
    got = costs.costs(measured)
    waves = math.ceil(3000 / (132 * 4))  # 64 registers: 4 CTAs per SM
    assert got == (  # relu is memory-bound: the class is the roofline's
        CallCost(3000, 64, 0, 30.0 / waves, compute_bound=False),
        CallCost(3000, 64, 0, 60.0 / waves, compute_bound=False),
    )
    assert solo_duration_us(got, SHAPE) == pytest.approx(90.0)
    assert costs.costs(unseen) == roofline.costs(unseen)
    assert costs.sources == {"measured": "profile", "unseen": "fallback"}
    # what a real device pads with: measurements only
    assert costs.profiled(measured) == got and costs.profiled(unseen) is None


def test_store_costs_fill_missing_resources_and_filter_backend(tmp_path: Path) -> None:
    g = graph("m", 1, numel=1024 * 3000)
    roofline = RooflineCosts(SHAPE)
    store = _store(tmp_path, ENV, _profile(g, [10.0], registers=None))
    [cost] = StoreCosts(store, SHAPE, roofline).costs(g)
    assert cost.registers == DEFAULT_REGISTERS  # from the fallback
    cpu_env = replace(ENV, backend="cpu")
    cpu_store = _store(tmp_path / "cpu", cpu_env, _profile(g, [1e4], 64))
    assert StoreCosts(cpu_store, SHAPE, roofline).costs(g) == roofline.costs(g)
    assert StoreCosts(cpu_store, SHAPE, roofline, backend=None).costs(g)[0].vb_us > 1e3
