"""interference/features.py on hand-made profiles: call, task and pair
features, the time weighting, quantisation bins and their centres."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reefd.interference.features import (
    CALL_FEATURES,
    PAIR_FEATURES,
    TASK_FEATURES,
    THREADS_PER_CTA,
    DeviceFacts,
    FeatureConfig,
    call_features,
    pair_features,
    pair_matrix,
    quantise,
    task_features,
    weighted_mean,
)
from reefd.profiler.records import (
    CallFacts,
    CallProfile,
    GpuReadings,
    ModelIdentity,
    TaskProfile,
)
from reefd.profiler.stats import Stats

H100 = DeviceFacts("cuda", "NVIDIA H100", sm_count=132)
CPU = DeviceFacts("cpu", "some CPU")


def _call(
    index: int,
    flops: int,
    moved: int,
    n_vb: int,
    median_us: float,
    registers: int | None = 32,
    ctas_per_sm: int | None = 4,
) -> CallProfile:
    facts = CallFacts(
        call_index=index,
        kernel="linear",
        variant="linear_body",
        form="plain",
        params={},
        n_vb=n_vb,
        flops=flops,
        bytes_moved=moved,
        registers=registers,
        smem_bytes=1024 if registers else None,
        ctas_per_sm=ctas_per_sm,
    )
    return CallProfile(facts, Stats.of([median_us]))


def _task(
    calls: list[CallProfile], median_us: float, gpu: GpuReadings | None = None
) -> TaskProfile:
    return TaskProfile(
        model=ModelIdentity("k" * 64, "m", "zoo:m", {}),
        batch=1,
        graph_key="g" * 64,
        duration=Stats.of([median_us]),
        samples_us=(median_us,),
        calls=tuple(calls),
        warmup=0,
        weight_bytes=0,
        scratch_bytes=0,
        gpu=gpu or GpuReadings(),
    )


def test_threads_per_cta_matches_the_kernel_library() -> None:
    from reefd.kernels.wrappers import CTA_THREADS

    assert THREADS_PER_CTA == CTA_THREADS


def test_call_features_of_one_call() -> None:
    f = call_features(_call(0, 4000, 100, 1056, 10.0), H100)
    assert list(f) == list(CALL_FEATURES)
    assert f["intensity_flops_per_byte"] == 40.0
    assert f["threads"] == 1056 * 256
    assert f["sm_share"] == 1.0  # two waves fill every slot
    half = call_features(_call(0, 1, 1, 264, 1.0), H100)
    assert half["sm_share"] == pytest.approx(0.5)
    cpu = call_features(_call(0, 1, 1, 264, 1.0, None, None), CPU)
    assert math.isnan(cpu["sm_share"]) and math.isnan(cpu["registers_per_thread"])


def test_task_features_weight_calls_by_solo_time() -> None:
    # a compute-bound call taking 30 us, a memory-bound one taking 10 us
    calls = [_call(0, 3000, 100, 100, 30.0), _call(1, 100, 1000, 300, 10.0, 64)]
    gpu = GpuReadings(sm_occupancy_pct=50.0, dram_bw_util_pct=20.0, power_w=300.0)
    f = task_features(_task(calls, 50.0, gpu), H100, FeatureConfig())
    assert list(f) == list(TASK_FEATURES)
    assert f["flops"] == 3100 and f["bytes"] == 1100
    assert f["intensity_flops_per_byte"] == pytest.approx(3100 / 1100)
    assert f["n_calls"] == 2
    assert f["ctas"] == pytest.approx((100 * 30 + 300 * 10) / 40)
    assert f["registers_per_thread"] == pytest.approx((32 * 30 + 64 * 10) / 40)
    assert f["compute_bound_frac"] == pytest.approx(0.75)  # ridge 20 FLOP/B
    assert f["duration_us"] == 50.0
    assert f["gflop_per_s"] == pytest.approx(3100 / 50e-6 / 1e9)
    assert f["gb_per_s"] == pytest.approx(1100 / 50e-6 / 1e9)
    assert (f["sm_occupancy_pct"], f["dram_bw_util_pct"]) == (50.0, 20.0)
    on_cpu = task_features(_task(calls, 50.0), CPU, FeatureConfig())
    assert math.isnan(on_cpu["sm_share"]) and math.isnan(on_cpu["dram_bw_util_pct"])


def test_weighted_mean_skips_unknown_values() -> None:
    assert weighted_mean([1.0, float("nan"), 3.0], [1.0, 5.0, 1.0]) == 2.0
    assert weighted_mean([2.0, 4.0], [0.0, 0.0]) == 3.0  # no time: equal weights
    assert math.isnan(weighted_mean([float("nan")], [1.0]))


def test_quantise_bins_and_centres() -> None:
    config = FeatureConfig(bins_per_decade=10, fraction_step=0.1, pct_step=5.0)
    raw = dict.fromkeys(TASK_FEATURES, 0.0)
    raw.update(flops=999.0, compute_bound_frac=0.34, sm_occupancy_pct=51.0)
    raw["dram_bw_util_pct"] = float("nan")
    code, centres = quantise(raw, config)
    names = list(TASK_FEATURES)
    assert code[names.index("flops")] == 30  # log10(1000) * 10
    assert centres["flops"] == pytest.approx(999.0)
    assert code[names.index("compute_bound_frac")] == 3
    assert centres["compute_bound_frac"] == pytest.approx(0.3)
    assert centres["sm_occupancy_pct"] == 50.0
    assert code[names.index("dram_bw_util_pct")] is None
    assert math.isnan(centres["dram_bw_util_pct"])
    # a centre lies in its own bin, and a magnitude is within half a bin of it
    assert quantise(centres, config)[0] == code
    for x in (1.0, 37.0, 5e6, 123456.0):
        raw["bytes"] = x
        centre = quantise(raw, config)[1]["bytes"]
        assert abs(math.log10((1 + centre) / (1 + x))) <= 0.5 / 10 + 1e-12


def test_pair_features_combine_both_sides() -> None:
    rt = dict.fromkeys(TASK_FEATURES, 1.0)
    be = dict.fromkeys(TASK_FEATURES, 1.0)
    rt.update(gb_per_s=100.0, gflop_per_s=10.0, ctas=30.0, duration_us=20.0)
    be.update(gb_per_s=300.0, gflop_per_s=2.0, ctas=10.0, duration_us=40.0)
    rt["compute_bound_frac"], be["compute_bound_frac"] = 1.0, 0.0
    f = pair_features(rt, be)
    assert list(f) == list(PAIR_FEATURES)
    assert f["rt_gb_per_s"] == 100.0 and f["be_gb_per_s"] == 300.0
    assert f["gb_per_s_sum"] == 400.0 and f["gb_per_s_product"] == 30000.0
    assert f["gflop_per_s_product"] == 20.0
    assert f["rt_ctas_share"] == 0.75
    assert f["duration_ratio"] == 0.5
    assert f["compute_bound_match"] == 0.0  # compute beside memory
    x = pair_matrix([(rt, be), (be, rt)])
    assert x.shape == (2, len(PAIR_FEATURES))
    assert x[1, PAIR_FEATURES.index("rt_gb_per_s")] == 300.0
    assert np.isfinite(x).all()


def test_feature_config_is_checked() -> None:
    from reefd.errors import ConfigError

    with pytest.raises(ConfigError, match="bins_per_decade 0"):
        FeatureConfig(bins_per_decade=0).check()
    with pytest.raises(ConfigError, match="ridge_flops_per_byte"):
        FeatureConfig(ridge_flops_per_byte=0.0).check()
