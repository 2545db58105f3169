"""conv2d_f16 / conv2d_bf16 and the TF32 precision of conv2d and linear, on a GPU.

Plain launches against the torch reference on model-zoo and odd shapes, each with
the tolerance its precision warrants (named in failure messages); every
tensor-core tile; misaligned buffers and unbound biases (the gathered-load and
single-store paths); every activation; the half convs also beside torch's own
cuDNN half convolution (reported, loosely bounded); then the preemptible form
(no preemption, a raised flag, a partial counter, a flag raised mid-run) and the
padded form bit for bit against the plain form.

Weights are N(0, 1 / fan-in) (c_in / groups * kh * kw for convs, k for linear),
so outputs are O(1) and the tolerances mean the same at every size.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from reefd.kernels import ops_conv, ops_linear_tc
from reefd.kernels.act import ACTS
from reefd.kernels.ops_linear_tc import TC_TILES
from tests.gpu.harness import (
    DEVICE,
    PRECISION,
    Call,
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

Case = tuple[str, dict[str, Any]]
HALF = ("conv2d_f16", "conv2d_bf16")

# --- tolerances -----------------------------------------------------------------------

TF32 = (
    "TF32 tensor cores (inputs rounded to 10-bit mantissas with cvt.rna, fp32 "
    "accumulation) vs the float32 reference with TF32 off, rtol = atol = 5e-3 for "
    "a reduction of at most 1024 terms and O(1) outputs"
)
F16 = (
    "float16 inputs, fp32 accumulation, y rounded once, vs torch in float32 from "
    "the same inputs rounded once: rtol = atol = 1e-2"
)
BF16 = (
    "bfloat16 inputs, fp32 accumulation, y rounded once, vs torch in float32 from "
    "the same inputs rounded once: rtol = atol = 2e-2"
)


def tolerance(call: Call) -> dict[str, Any]:
    """assert_matches_reference's rtol, atol and precision text for a call."""
    dtype = call.spec.operand("y").dtypes[0]
    if dtype == "float16":
        return {"rtol": 1e-2, "atol": 1e-2, "precision": F16}
    if dtype == "bfloat16":
        return {"rtol": 2e-2, "atol": 2e-2, "precision": BF16}
    if call.params.get("precision") == "tf32":
        return {"rtol": 5e-3, "atol": 5e-3, "precision": TF32}
    return {"precision": PRECISION}


def check_reference(call: Call, got: dict[str, torch.Tensor]) -> None:
    assert_matches_reference(call, got, **tolerance(call))


# --- calls ----------------------------------------------------------------------------


def _fan_in(name: str, p: dict[str, Any]) -> int:
    if name == "linear":
        return p["k"]
    return p["c_in"] // p.get("groups", 1) * p["kh"] * p["kw"]


def call_for(name: str, params: dict[str, Any], **kwargs: Any) -> Call:
    """make_call with w ~ N(0, 1 / fan-in) for the convs and linear (the harness
    scales only the float32 linear and conv2d weights itself); other kernels
    (the padded pairs' elementwise partners) as make_call makes them."""
    if name not in ("linear", "conv2d", *HALF):
        return make_call(name, params, **kwargs)
    scale = _fan_in(name, params) ** -0.5

    def fill(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=DEVICE) * scale

    return make_call(name, params, fill={"w": fill}, **kwargs)


# --- shapes ---------------------------------------------------------------------------

# Model-zoo convs at batch 8: ResNet-50's stem, a layer1 3x3, the layer2 1x1
# stride-2 downsample, a MobileNet depthwise 3x3 (the direct body).
STEM = dict(
    n=8,
    c_in=3,
    h=224,
    w=224,
    c_out=64,
    kh=7,
    kw=7,
    stride=(2, 2),
    padding=(3, 3),
    act="relu",
)
LAYER1 = dict(
    n=8, c_in=64, h=56, w=56, c_out=64, kh=3, kw=3, padding=(1, 1), act="relu"
)
DOWN = dict(n=8, c_in=256, h=56, w=56, c_out=512, kh=1, kw=1, stride=(2, 2))
DEPTHWISE = dict(
    n=8,
    c_in=96,
    h=56,
    w=56,
    c_out=96,
    kh=3,
    kw=3,
    padding=(1, 1),
    groups=96,
    act="relu6",
)
ZOO = [STEM, LAYER1, DOWN, DEPTHWISE]

ODD = [
    # Fewer channels than a tile, odd pixel count (single stores).
    dict(n=2, c_in=3, h=9, w=7, c_out=4, kh=3, kw=3),
    dict(n=1, c_in=4, h=10, w=11, c_out=6, kh=3, kw=2, stride=(2, 1), padding=(1, 2)),
    # 18 channels per group: the implicit GEMM per group, dilated.
    dict(n=2, c_in=6, h=12, w=12, c_out=36, kh=3, kw=3, dilation=(2, 3), groups=2),
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
    ),
    # Reduction 297 (a k-tile tail, not a multiple of 8), 65 channels, gelu.
    dict(
        n=3,
        c_in=33,
        h=17,
        w=15,
        c_out=65,
        kh=3,
        kw=3,
        stride=(2, 2),
        padding=(1, 1),
        act="gelu",
    ),
    # 3x3 output planes (odd OH * OW) over 37 images.
    dict(n=37, c_in=40, h=3, w=3, c_out=70, kh=3, kw=3, padding=(1, 1)),
    # ResNet-50 layer4 expansion 1x1 (reduction 512).
    dict(n=2, c_in=512, h=7, w=7, c_out=2048, kh=1, kw=1, act="relu"),
    # Direct bodies: ResNeXt 4 per group, depthwise stride 2, 5x5 and an
    # unrolled-size miss (5x3), 1x1 output planes.
    dict(n=2, c_in=128, h=14, w=14, c_out=128, kh=3, kw=3, padding=(1, 1), groups=32),
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
    ),
    dict(n=1, c_in=16, h=9, w=9, c_out=32, kh=5, kw=5, padding=(2, 2), groups=16),
    dict(n=1, c_in=8, h=9, w=9, c_out=8, kh=5, kw=3, padding=(2, 1), groups=8),
    dict(n=300, c_in=6, h=3, w=3, c_out=6, kh=3, kw=3, groups=2),
]

LINEAR_TF32 = [
    dict(m=8 * 197, n=3072, k=768, act="gelu"),  # ViT-B/16 MLP up, batch 8
    dict(m=197, n=768, k=768),  # ViT-B/16 projection, batch 1
    dict(m=8 * 128, n=768, k=768, act="relu"),  # DistilBERT projection, batch 8
    dict(m=9, n=1000, k=2048),  # just past the skinny body
    dict(m=130, n=70, k=37, act="silu"),
    dict(m=257, n=131, k=520),
    dict(m=4, n=1000, k=2048),  # the skinny body at either precision
]

CASES: list[Case] = [
    *((name, p) for name in HALF for p in ZOO + ODD),
    *(("conv2d", {**p, "precision": "tf32"}) for p in ZOO + ODD),
    *(("linear", {**p, "precision": "tf32"}) for p in LINEAR_TF32),
]


def _small(p: dict[str, Any]) -> dict[str, Any]:
    """A zoo conv at batch 2 (the form tests launch each call many times)."""
    return {**p, "n": 2}


# --- plain vs torch -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_plain_matches_torch(gpu: Gpu, case: Case) -> None:
    call = call_for(*case, seed=41)
    check_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "case",
    [
        (
            "conv2d_f16",
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
        ("conv2d_bf16", ODD[4]),
        ("conv2d_f16", dict(n=2, c_in=32, h=12, w=10, c_out=64, kh=3, kw=3)),
        (
            "conv2d_bf16",
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
        ("conv2d", {**ODD[4], "precision": "tf32"}),
        (
            "conv2d",
            dict(n=2, c_in=32, h=12, w=10, c_out=64, kh=3, kw=3, precision="tf32"),
        ),
        ("linear", dict(m=130, n=70, k=37, act="relu", precision="tf32")),
        ("linear", dict(m=64, n=96, k=128, precision="tf32")),
    ],
    ids=case_id,
)
@pytest.mark.parametrize("bias", [True, False])
def test_misaligned_buffers_and_no_bias(gpu: Gpu, case: Case, bias: bool) -> None:
    """Buffers one element off 16-byte alignment take the gathered weight loads
    and the single stores (even sizes would otherwise use cp.async and pairs)."""
    call = call_for(*case, misalign=True, bias=bias, seed=42)
    check_reference(call, run_plain(gpu, call))


def _tile_cases(tile) -> list[Case]:
    convs = [
        # Channels past a tile, an odd pixel count, reduction 45 (a k-tile tail).
        dict(
            n=3,
            c_in=5,
            h=7,
            w=9,
            c_out=tile.bm + 3,
            kh=3,
            kw=3,
            padding=(1, 1),
            act="relu",
        ),
        # Whole tiles: 2 x BM channels, 128 pixels, reduction 32.
        dict(n=2, c_in=32, h=8, w=8, c_out=2 * tile.bm, kh=1, kw=1),
        # Two groups of 32 channels, stride (2, 1).
        dict(n=2, c_in=64, h=6, w=5, c_out=64, kh=3, kw=3, groups=2, stride=(2, 1)),
    ]
    cases: list[Case] = [(name, p) for p in convs for name in HALF]
    cases += [("conv2d", {**p, "precision": "tf32"}) for p in convs]
    cases += [
        (
            "linear",
            dict(
                m=tile.bm + 9,
                n=2 * tile.bn - 5,
                k=3 * 16 + 3,
                act="relu",
                precision="tf32",
            ),
        ),
        ("linear", dict(m=2 * tile.bm, n=tile.bn, k=256, precision="tf32")),
    ]
    return cases


@pytest.mark.parametrize("tile", TC_TILES, ids=str)
def test_every_tensor_core_tile(gpu: Gpu, monkeypatch, tile) -> None:
    monkeypatch.setattr(ops_conv, "tc_tile", lambda *a, **k: tile)
    monkeypatch.setattr(ops_linear_tc, "tc_tile", lambda *a, **k: tile)
    for name, params in _tile_cases(tile):
        call = call_for(name, params, seed=43)
        assert f"<{tile.bm}, {tile.bn}, " in call.body, call.body
        check_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize("act", ACTS)
def test_every_act(gpu: Gpu, act: str) -> None:
    """ACT is a template argument of every epilogue here: each compiles its own."""
    conv = dict(n=2, c_in=16, h=14, w=14, c_out=32, kh=3, kw=3, act=act)
    dw = dict(n=1, c_in=8, h=9, w=9, c_out=8, kh=3, kw=3, groups=8, act=act)
    for name, params in [
        ("conv2d_f16", conv),
        ("conv2d_bf16", conv),
        ("conv2d_f16", dw),
        ("conv2d", {**conv, "precision": "tf32"}),
        ("linear", dict(m=64, n=96, k=128, act=act, precision="tf32")),
    ]:
        call = call_for(name, params, seed=44)
        assert call.body.endswith(f", {ACTS.index(act)}>"), call.body
        check_reference(call, run_plain(gpu, call))


HALF_VS_CUDNN = [("conv2d_f16", LAYER1), ("conv2d_bf16", DOWN), ("conv2d_f16", STEM)]


@pytest.mark.parametrize("case", HALF_VS_CUDNN, ids=case_id)
def test_half_convs_beside_cudnn(gpu: Gpu, case: Case) -> None:
    """Reported, not asserted tightly: cuDNN's half convolution may round partial
    sums; both should sit within a few tolerances of the float32 reference."""
    call = call_for(*case, seed=45)
    got = run_plain(gpu, call)["y"].float()
    p, t = call.params, call.tensors
    cudnn = F.conv2d(
        t["x"],
        t["w"],
        t["bias"],
        stride=p["stride"],
        padding=p["padding"],
        dilation=p["dilation"],
        groups=p["groups"],
    )
    cudnn = (torch.relu(cudnn) if p["act"] == "relu" else cudnn).float()
    want = call.expected["y"].float()
    ours, theirs = (got - want).abs().max().item(), (cudnn - want).abs().max().item()
    print(
        f"{call.where()}: max |kernel - fp32 ref| = {ours:.3g}, max |cuDNN half - "
        f"fp32 ref| = {theirs:.3g}, max |kernel - cuDNN| = "
        f"{(got - cudnn).abs().max().item():.3g}"
    )
    tol = tolerance(call)
    assert torch.allclose(got, cudnn, rtol=4 * tol["rtol"], atol=4 * tol["atol"]), (
        f"{call.where()}: far from torch's cuDNN half conv (4x {tol['precision']})"
    )


# --- preemptible ----------------------------------------------------------------------

FORM_CASES: list[Case] = [
    ("conv2d_f16", _small(LAYER1)),
    ("conv2d_bf16", _small(DOWN)),
    ("conv2d_f16", _small(DEPTHWISE)),
    ("conv2d_bf16", ODD[4]),
    ("conv2d", {**_small(LAYER1), "c_out": 128, "precision": "tf32"}),
    ("conv2d", {**ODD[4], "precision": "tf32"}),
    ("linear", dict(m=197, n=768, k=768, act="relu", precision="tf32")),
    ("linear", dict(m=130, n=70, k=37, act="gelu", precision="tf32")),
]


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preemptible_without_preemption_equals_plain(gpu: Gpu, case: Case) -> None:
    check_preemptible_equals_plain(gpu, call_for(*case, seed=46), check_reference)


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_raised_flag_runs_nothing_then_the_same_counter_resumes(gpu, case) -> None:
    check_raised_flag_runs_nothing(gpu, call_for(*case, seed=47))


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_resuming_from_a_partial_counter_equals_plain(gpu, case) -> None:
    """Blocks [0, k) done by an earlier launch; the preemptible form resumes at k."""
    check_resume_from_counter(gpu, call_for(*case, seed=48))


@pytest.mark.parametrize(
    "case",
    [
        # Each takes tens of ms on one CTA, so the flag lands mid-run.
        (
            "conv2d_f16",
            dict(n=64, c_in=128, h=56, w=56, c_out=128, kh=3, kw=3, padding=(1, 1)),
        ),
        ("conv2d_bf16", {**DEPTHWISE, "n": 64}),
        (
            "conv2d",
            dict(
                n=32,
                c_in=128,
                h=56,
                w=56,
                c_out=128,
                kh=3,
                kw=3,
                padding=(1, 1),
                precision="tf32",
            ),
        ),
        ("linear", dict(m=4096, n=4096, k=4096, act="relu", precision="tf32")),
    ],
    ids=case_id,
)
def test_flag_raised_mid_run_stops_and_resumes_exactly(gpu: Gpu, case: Case) -> None:
    check_flag_mid_run(gpu, call_for(*case, seed=49))


# --- padded ---------------------------------------------------------------------------

PADDED_PAIRS: list[tuple[Case, Case]] = [
    (("conv2d", {**_small(LAYER1), "precision": "tf32"}), ("conv2d_f16", _small(DOWN))),
    (
        ("linear", dict(m=197, n=768, k=768, precision="tf32")),
        ("conv2d_bf16", _small(DEPTHWISE)),
    ),
    (("conv2d_f16", _small(STEM)), ("conv2d", {**_small(DOWN), "precision": "tf32"})),
    (("add", {"numel": 1 << 20, "act": "relu"}), ("conv2d_bf16", _small(LAYER1))),
    (("conv2d_bf16", ODD[4]), ("relu", {"numel": (1 << 20) + 3})),
    (
        ("conv2d", _small(LAYER1)),
        ("linear", dict(m=8 * 197, n=768, k=768, act="gelu", precision="tf32")),
    ),
]


def _pair_id(pair: tuple[Case, Case]) -> str:
    (rt, rp), (be, bp) = pair
    return f"rt_{rt}{'_tf32' * (rp.get('precision') == 'tf32')}-be_{be}" + (
        "_tf32" * (bp.get("precision") == "tf32")
    )


@pytest.mark.parametrize("pair", PADDED_PAIRS, ids=_pair_id)
def test_padded_launch_produces_both_results_exactly(gpu: Gpu, pair) -> None:
    rt, be = call_for(*pair[0], seed=50), call_for(*pair[1], seed=51)
    check_padded_pair(gpu, rt, be, check_rt=check_reference, check_be=check_reference)
