"""The CUDA kernel library on a real GPU.

Every catalog kernel's body, compiled by NVRTC through `reefd.kernels.wrappers`
and launched with `cuda.bindings.driver`, against its torch reference computed
on the same GPU; then the preemptible and padded forms against the plain form,
bit for bit: a virtual block computes the same values whichever CTA runs it, so
resuming after a preemption or sharing a launch must not change a single bit.

Buffers are torch CUDA tensors (`data_ptr()`); launches go on torch's current
stream of the primary context, which torch and the driver API share.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from reefd.kernels import catalog, ops_conv, ops_linear
from reefd.kernels.act import ACTS
from tests.gpu.harness import (
    ATOL,
    DEVICE,
    RTOL,
    Gpu,
    assert_matches_reference,
    case_id,
    check_flag_mid_run,
    check_padded_pair,
    check_preemptible_equals_plain,
    check_raised_flag_runs_nothing,
    check_resume_from_counter,
    make_call,
    run_plain,
)

pytestmark = pytest.mark.gpu

# --- shapes -----------------------------------------------------------------------

LINEAR = [
    dict(m=1, n=1000, k=2048),  # ResNet-50 classifier, batch 1 (skinny body)
    dict(m=3, n=17, k=1027, act="relu"),
    dict(m=8, n=9, k=100),
    dict(m=9, n=300, k=40),
    dict(m=130, n=70, k=37, act="relu"),
    dict(m=197, n=768, k=768),  # ViT-B attention projection, batch 1
    dict(m=8 * 197, n=3072, k=768, act="relu"),  # ViT-B MLP, batch 8
    dict(m=2000, n=1000, k=64),
]

CONV = [
    dict(n=2, c_in=3, h=9, w=7, c_out=4, kh=3, kw=3),
    dict(n=1, c_in=4, h=10, w=11, c_out=6, kh=3, kw=2, stride=(2, 1), padding=(1, 2)),
    dict(n=2, c_in=6, h=12, w=12, c_out=4, kh=3, kw=3, dilation=(2, 3), groups=2),
    dict(n=1, c_in=8, h=7, w=9, c_out=8, kh=3, kw=3, padding=(1, 1), groups=8),
    dict(n=1, c_in=2, h=5, w=5, c_out=3, kh=1, kw=1, stride=(3, 2), act="relu"),
    dict(
        n=2,
        c_in=3,
        h=224,
        w=224,
        c_out=64,
        kh=7,
        kw=7,
        stride=(2, 2),
        padding=(3, 3),
        act="relu",
    ),  # ResNet-50 stem
    dict(n=2, c_in=64, h=56, w=56, c_out=64, kh=3, kw=3, padding=(1, 1), act="relu"),
    dict(n=2, c_in=256, h=14, w=14, c_out=512, kh=1, kw=1, stride=(2, 2)),
    dict(n=2, c_in=512, h=7, w=7, c_out=2048, kh=1, kw=1, act="relu"),
    dict(
        n=2, c_in=128, h=14, w=14, c_out=128, kh=3, kw=3, padding=(1, 1), groups=32
    ),  # ResNeXt grouped 3x3: 4 channels per group (direct body)
    dict(
        n=2,
        c_in=64,
        h=10,
        w=10,
        c_out=64,
        kh=3,
        kw=3,
        padding=(2, 2),
        dilation=(2, 2),
        groups=2,
    ),  # 32 per group: the GEMM body per group
    dict(
        n=2,
        c_in=96,
        h=28,
        w=28,
        c_out=96,
        kh=3,
        kw=3,
        stride=(2, 2),
        padding=(1, 1),
        groups=96,
    ),  # depthwise
    dict(n=1, c_in=16, h=9, w=9, c_out=32, kh=5, kw=5, padding=(2, 2), groups=16),
    dict(n=300, c_in=6, h=3, w=3, c_out=6, kh=3, kw=3, groups=2),  # 1x1 planes
]

FLAT = [1, 3, 1023, 1024 * 10 + 1, 3 * 10**6 + 3]

POOL_WINDOWS = [
    dict(kernel=(2, 2), stride=(2, 2)),
    dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
    dict(kernel=(3, 2), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel=(2, 2), stride=(3, 3), ceil_mode=True),
    dict(kernel=(3, 3), stride=(1, 2), padding=(1, 0)),
    dict(kernel=(5, 3), stride=(3, 2), padding=(2, 1), ceil_mode=True),
]
POOL_INPUTS = [(2, 3, 10, 9), (3, 50, 11, 8), (8, 64, 112, 112)]

ADAPTIVE = [
    ((8, 8), (2, 2)),
    ((7, 10), (3, 4)),
    ((3, 5), (6, 5)),
    ((7, 7), (1, 1)),
    ((56, 56), (1, 1)),
    ((9, 9), (4, 7)),
]

SOFTMAX = [
    (6, 33),
    (17, 1),
    (8 * 12 * 197, 197),
    (64, 1000),
    (3, 1024),
    (3, 1025),
    (5, 2048),
    (4, 3000),
    (2, 4096),
    (2, 4097),
    (5, 32000),
]


def _valid(name: str, params: dict[str, Any]) -> bool:
    spec = catalog.get(name)
    try:
        spec.shapes(spec.with_defaults(params))
    except Exception:
        return False
    return True


def _pool_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for window in POOL_WINDOWS:
        for n, c, h, w in POOL_INPUTS:
            base = dict(n=n, c=c, h=h, w=w, **window)
            for dilation in [(1, 1), (2, 1), (2, 3)]:
                cases.append(("max_pool2d", {**base, "dilation": dilation}))
            for extra in [{}, {"count_include_pad": False}, {"divisor_override": 3}]:
                cases.append(("avg_pool2d", {**base, **extra}))
    return [(k, p) for k, p in cases if _valid(k, p)]


CASES: list[tuple[str, dict[str, Any]]] = [
    *(("linear", p) for p in LINEAR),
    *(("conv2d", p) for p in CONV),
    *((k, {"numel": n}) for k in ("relu", "copy") for n in FLAT),
    *(("add", {"numel": n, "act": a}) for n in FLAT for a in ("none", "relu")),
    *_pool_cases(),
    *(
        ("adaptive_avg_pool2d", dict(n=3, c=37, h=h, w=w, out_h=oh, out_w=ow))
        for (h, w), (oh, ow) in ADAPTIVE
    ),
    *(("softmax", {"rows": r, "cols": c}) for r, c in SOFTMAX),
]


# --- plain vs torch -----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_plain_matches_torch(gpu: Gpu, case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    call = make_call(name, params, seed=len(CASES))
    assert_matches_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "name,params",
    [
        ("linear", dict(m=130, n=70, k=37, act="relu")),
        ("linear", dict(m=3, n=17, k=1027)),
        (
            "conv2d",
            dict(
                n=2,
                c_in=3,
                h=31,
                w=29,
                c_out=20,
                kh=7,
                kw=7,
                stride=(2, 2),
                padding=(3, 3),
            ),
        ),
        (
            "conv2d",
            dict(
                n=1,
                c_in=12,
                h=30,
                w=20,
                c_out=24,
                kh=5,
                kw=5,
                padding=(2, 2),
                groups=12,
                act="relu",
            ),
        ),
        ("relu", {"numel": 4099}),
        ("add", {"numel": 4099, "act": "relu"}),
        ("copy", {"numel": 4099}),
        ("softmax", {"rows": 7, "cols": 1500}),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_misaligned_buffers_and_no_bias(gpu: Gpu, name, params, bias) -> None:
    """Buffers only 4-byte aligned take the scalar paths; bias may be unbound."""
    call = make_call(name, params, misalign=True, bias=bias, seed=1)
    assert_matches_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "name,params,alias",
    [
        ("relu", {"numel": 10241}, ("x", "y")),
        ("add", {"numel": 10241, "act": "relu"}, ("a", "y")),
        ("add", {"numel": 10241}, ("b", "y")),
        ("softmax", {"rows": 9, "cols": 197}, ("x", "y")),
        ("softmax", {"rows": 3, "cols": 3000}, ("x", "y")),
        ("softmax", {"rows": 3, "cols": 9000}, ("x", "y")),
    ],
)
def test_inplace_kernels(gpu: Gpu, name, params, alias) -> None:
    call = make_call(name, params, alias=alias, seed=2)
    assert_matches_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize("tile", ops_linear.GEMM_TILES, ids=str)
def test_every_linear_tile(gpu: Gpu, monkeypatch, tile) -> None:
    monkeypatch.setattr(ops_linear, "gemm_tile", lambda *a, **k: tile)
    for params in (
        dict(m=tile.bm + 3, n=2 * tile.bn - 5, k=4 * tile.bk + 3, act="relu"),
        dict(m=2 * tile.bm, n=tile.bn, k=256),
    ):
        call = make_call("linear", params, seed=3)
        act = ACTS.index(call.params["act"])
        assert call.body == f"linear_body<{tile.bm}, {tile.bn}, {tile.bk}, {act}>"
        assert_matches_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize("tile", ops_conv.CONV_TILES, ids=str)
def test_every_conv_tile(gpu: Gpu, monkeypatch, tile) -> None:
    monkeypatch.setattr(ops_conv, "gemm_tile", lambda *a, **k: tile)
    for params in (
        dict(
            n=2,
            c_in=8,
            h=9,
            w=11,
            c_out=tile.bm + 5,
            kh=3,
            kw=3,
            padding=(1, 1),
            act="relu",
        ),
        dict(n=1, c_in=4 * tile.bk, h=8, w=8, c_out=tile.bm, kh=1, kw=1),
        dict(n=2, c_in=64, h=6, w=5, c_out=64, kh=3, kw=3, groups=2, stride=(2, 1)),
    ):
        call = make_call("conv2d", params, seed=4)
        assert call.body == f"conv2d_body<{tile.bm}, {tile.bn}, {tile.bk}, -1>"
        assert_matches_reference(call, run_plain(gpu, call))


TF32 = (
    "TF32 tensor cores (inputs rounded to 10-bit mantissas, fp32 accumulation) vs "
    "the float32 reference with TF32 off, rtol = atol = 5e-3 (reductions of at "
    "most 1024 terms, O(1) outputs); tests/gpu/test_conv_tc.py covers every tile"
)


@pytest.mark.parametrize(
    "case",
    [
        *(("linear", p) for p in LINEAR if p["m"] > 8),
        *(("conv2d", p) for p in CONV),
    ],
    ids=case_id,
)
def test_tf32_precision_matches_torch(gpu: Gpu, case) -> None:
    """precision="tf32": tensor cores for linear past the skinny body and for
    conv2d's implicit GEMM; grouped convs with few channels per group keep the
    direct body (fp32), which must then match at the harness precision too."""
    name, params = case
    call = make_call(name, {**params, "precision": "tf32"}, seed=11)
    want_tc = "direct" not in call.body
    assert ("tf32" in call.body) == want_tc, call.body
    got = run_plain(gpu, call)
    if want_tc:
        assert_matches_reference(call, got, rtol=5e-3, atol=5e-3, precision=TF32)
    else:
        assert_matches_reference(call, got)


def test_special_values_follow_torch(gpu: Gpu) -> None:
    """NaN and -inf: relu and max pooling keep NaN; softmax of an all -inf row
    is NaN, as in torch."""
    x = torch.tensor([-1.0, float("nan"), 2.0, -0.0] * 300, device=DEVICE)
    call = make_call("relu", {"numel": x.numel()})
    call.tensors["x"].copy_(x)
    got = run_plain(gpu, call)["y"]
    assert torch.equal(got.isnan(), torch.relu(x).isnan())
    assert torch.equal(got.nan_to_num(7.0), torch.relu(x).nan_to_num(7.0))

    for cols in (100, 3000, 9000):
        # No mask bound (bias=False): the expected value below is plain softmax.
        call = make_call("softmax", {"rows": 3, "cols": cols}, scale=30.0, bias=False)
        x = call.tensors["x"]
        x[1] = float("-inf")
        x[2, ::3] = float("-inf")
        want = torch.softmax(x, -1)
        got = run_plain(gpu, call)["y"]
        assert torch.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True), cols

    params = dict(n=1, c=2, h=9, w=9, kernel=(3, 3), stride=(2, 2))
    call = make_call("max_pool2d", params)
    call.tensors["x"][0, 0, 4, 4] = float("nan")
    want = torch.nn.functional.max_pool2d(call.tensors["x"], 3, 2)
    got = run_plain(gpu, call)["y"]
    assert torch.equal(got.isnan(), want.isnan())


# --- preemptible ---------------------------------------------------------------------

FORM_CASES = [
    ("linear", dict(m=197, n=768, k=768, act="relu")),
    ("linear", dict(m=4, n=1000, k=2048)),
    ("conv2d", dict(n=2, c_in=64, h=28, w=28, c_out=128, kh=3, kw=3, padding=(1, 1))),
    (
        "conv2d",
        dict(n=2, c_in=32, h=28, w=28, c_out=32, kh=3, kw=3, padding=(1, 1), groups=32),
    ),
    ("relu", {"numel": 1 << 20}),
    ("add", {"numel": (1 << 20) + 7, "act": "relu"}),
    ("copy", {"numel": 12345}),
    (
        "max_pool2d",
        dict(n=4, c=64, h=56, w=56, kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
    ),
    (
        "avg_pool2d",
        dict(
            n=4,
            c=64,
            h=56,
            w=56,
            kernel=(3, 3),
            stride=(2, 2),
            padding=(1, 1),
            ceil_mode=True,
            count_include_pad=False,
        ),
    ),
    ("adaptive_avg_pool2d", dict(n=4, c=2048, h=7, w=7, out_h=1, out_w=1)),
    ("adaptive_avg_pool2d", dict(n=4, c=64, h=10, w=10, out_h=3, out_w=4)),
    ("softmax", {"rows": 8 * 197, "cols": 197}),
    ("softmax", {"rows": 64, "cols": 3000}),
    ("softmax", {"rows": 16, "cols": 9000}),
]


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preemptible_without_preemption_equals_plain(gpu: Gpu, case) -> None:
    check_preemptible_equals_plain(gpu, make_call(*case, seed=5))


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_raised_flag_runs_nothing_then_the_same_counter_resumes(gpu, case) -> None:
    check_raised_flag_runs_nothing(gpu, make_call(*case, seed=6))


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_resuming_from_a_partial_counter_equals_plain(gpu, case) -> None:
    """Blocks [0, k) done by an earlier launch; the preemptible form resumes at k."""
    check_resume_from_counter(gpu, make_call(*case, seed=7))


@pytest.mark.parametrize(
    "case",
    [
        # Each takes tens of ms on one CTA, so the flag lands mid-run.
        ("relu", {"numel": 1 << 26}),
        ("linear", dict(m=2048, n=2048, k=1024)),
        (
            "conv2d",
            dict(n=32, c_in=64, h=56, w=56, c_out=64, kh=3, kw=3, padding=(1, 1)),
        ),
    ],
    ids=case_id,
)
def test_flag_raised_mid_run_stops_and_resumes_exactly(gpu: Gpu, case) -> None:
    """One persistent CTA walks the blocks; the host raises a mapped-memory flag
    mid-run; relaunching with the same counter finishes with the plain result."""
    check_flag_mid_run(gpu, make_call(*case, seed=8))


# --- padded --------------------------------------------------------------------------

PADDED_PAIRS = [
    (("linear", dict(m=197, n=768, k=768)), ("relu", {"numel": (1 << 20) + 3})),
    (
        ("linear", dict(m=1576, n=768, k=768, act="relu")),
        ("add", {"numel": 1 << 20, "act": "relu"}),
    ),
    (
        (
            "conv2d",
            dict(
                n=2,
                c_in=64,
                h=28,
                w=28,
                c_out=64,
                kh=3,
                kw=3,
                padding=(1, 1),
                act="relu",
            ),
        ),
        ("linear", dict(m=197, n=768, k=768)),
    ),
    (
        (
            "conv2d",
            dict(
                n=2,
                c_in=32,
                h=28,
                w=28,
                c_out=32,
                kh=3,
                kw=3,
                padding=(1, 1),
                groups=32,
            ),
        ),
        ("softmax", {"rows": 1000, "cols": 197}),
    ),
]


def _pair_id(pair) -> str:
    (rt, _), (be, _) = pair
    return f"rt_{rt}-be_{be}"


@pytest.mark.parametrize("pair", PADDED_PAIRS, ids=_pair_id)
def test_padded_launch_produces_both_results_exactly(gpu: Gpu, pair) -> None:
    check_padded_pair(gpu, make_call(*pair[0], seed=9), make_call(*pair[1], seed=10))
