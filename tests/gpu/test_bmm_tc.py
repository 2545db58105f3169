"""bmm (ieee and tf32), bmm_f16 / bmm_bf16 and linear_f16 / linear_bf16 on a GPU.

Plain launches against the torch reference on random, odd and model-zoo shapes,
each with the tolerance its precision warrants (named in failure messages); every
tensor-core and SIMT tile; misaligned buffers (the gathered-load paths); the half
kernels also against torch's own cuBLAS half matmul (reported, loosely bounded);
then the preemptible and padded forms bit for bit against the plain form.

Operands are scaled by 1 / sqrt(fan-in) along the contracted dimension, so
outputs are O(1) and the tolerances mean the same at every k.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from reefd.kernels import catalog, ops_bmm, ops_linear, ops_linear_tc
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

# --- tolerances -----------------------------------------------------------------------

TF32 = (
    "TF32 tensor cores (inputs rounded to 10-bit mantissas with cvt.rna, fp32 "
    "accumulation) vs the float32 reference with TF32 off, rtol = atol = 5e-3 for "
    "k <= 1024 and O(1) outputs"
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
    dtype = call.spec.operands[0].dtypes[0]
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


def _scaled(k: int):
    def fill(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=DEVICE) * k**-0.5

    return fill


def call_for(name: str, params: dict[str, Any], **kwargs: Any) -> Call:
    """make_call with the right-hand GEMM operand (`b` or `w`, for kernels with a
    `k` param) scaled by 1 / sqrt(k), so outputs stay O(1)."""
    operands = {op.name for op in catalog.get(name).operands}
    fill = {
        op: _scaled(params["k"])
        for op in ("b", "w")
        if op in operands and "k" in params
    }
    return make_call(name, params, fill=fill, **kwargs)


# --- shapes ---------------------------------------------------------------------------

ATTN_VIT = dict(batch=96, m=197, n=197, k=64, trans_b=True, scale=0.125)
ATTN_BERT = dict(batch=96, m=128, n=128, k=64, trans_b=True, scale=0.125)
PV_VIT = dict(batch=96, m=197, n=64, k=197)
PV_BERT = dict(batch=96, m=128, n=64, k=128)
BMM_SHAPES = [
    ATTN_VIT,
    ATTN_BERT,
    PV_VIT,
    PV_BERT,
    # Odd: nothing a multiple of a tile or of 8 (k % 8 != 0: gathered loads).
    dict(batch=3, m=37, n=45, k=29),
    dict(batch=3, m=37, n=45, k=29, trans_b=True, scale=-0.5),
    dict(batch=2, m=1, n=1, k=1),
    dict(batch=2, m=130, n=70, k=37, trans_b=True),
    dict(batch=1, m=129, n=257, k=1000),
    dict(batch=5, m=64, n=96, k=1024, trans_b=True),
    dict(batch=2, m=200, n=9, k=8),
]

LINEAR_SHAPES = [
    dict(m=8 * 197, n=2304, k=768),  # ViT-B/16 qkv, batch 8
    dict(m=8 * 197, n=3072, k=768, act="relu"),  # ViT-B/16 MLP up
    dict(m=8 * 128, n=768, k=768),  # DistilBERT projection
    dict(m=8, n=1000, k=2048),  # ResNet-50 classifier, batch 8
    dict(m=1, n=1, k=1),
    dict(m=3, n=17, k=1027, act="relu"),
    dict(m=130, n=70, k=37, act="gelu"),
    dict(m=197, n=33, k=72, act="silu"),
    dict(m=257, n=131, k=520),
]

BMM_KERNELS = [
    ("bmm", {}),
    ("bmm", {"precision": "tf32"}),
    ("bmm_f16", {}),
    ("bmm_bf16", {}),
]
CASES: list[Case] = [
    *((name, {**p, **extra}) for name, extra in BMM_KERNELS for p in BMM_SHAPES),
    *((name, p) for name in ("linear_f16", "linear_bf16") for p in LINEAR_SHAPES),
]


# --- plain vs torch -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_plain_matches_torch(gpu: Gpu, case: Case) -> None:
    call = call_for(*case, seed=21)
    check_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "case",
    [
        ("bmm", dict(batch=2, m=33, n=47, k=29, trans_b=True)),
        ("bmm", dict(batch=2, m=33, n=47, k=29, precision="tf32")),
        ("bmm_f16", dict(batch=2, m=70, n=66, k=48)),
        ("bmm_bf16", dict(batch=2, m=70, n=66, k=48, trans_b=True)),
        ("linear_f16", dict(m=70, n=66, k=48, act="relu")),
        ("linear_bf16", dict(m=70, n=65, k=40)),
    ],
    ids=case_id,
)
@pytest.mark.parametrize("bias", [True, False])
def test_misaligned_buffers_and_no_bias(gpu: Gpu, case: Case, bias: bool) -> None:
    """Buffers one element off 16-byte alignment take the gathered-load and single
    store paths (k and n multiples of 8 would otherwise use cp.async)."""
    call = call_for(*case, misalign=True, bias=bias, seed=22)
    check_reference(call, run_plain(gpu, call))


def _tc_cases(tile) -> list[Case]:
    odd = dict(m=tile.bm + 3, n=2 * tile.bn - 5, k=3 * 32 + 3)
    even = dict(m=2 * tile.bm, n=tile.bn, k=256)
    cases: list[Case] = []
    for p in (odd, even):
        cases += [("linear_f16", p), ("linear_bf16", {**p, "act": "relu"})]
        for tb in (False, True):
            b = {"batch": 2, **p, "trans_b": tb}
            cases += [("bmm_f16", b), ("bmm_bf16", b)]
            cases.append(("bmm", {**b, "precision": "tf32"}))
    return cases


@pytest.mark.parametrize("tile", TC_TILES, ids=str)
def test_every_tensor_core_tile(gpu: Gpu, monkeypatch, tile) -> None:
    for module in (ops_bmm, ops_linear_tc):
        monkeypatch.setattr(module, "tc_tile", lambda *a, **k: tile)
    for name, params in _tc_cases(tile):
        call = call_for(name, params, seed=23)
        assert f"<{tile.bm}, {tile.bn}" in call.body, call.body
        check_reference(call, run_plain(gpu, call))


@pytest.mark.parametrize("tile", ops_linear.GEMM_TILES, ids=str)
def test_every_simt_bmm_tile(gpu: Gpu, monkeypatch, tile) -> None:
    monkeypatch.setattr(ops_bmm, "gemm_tile", lambda *a, **k: tile)
    for tb in (False, True):
        for p in (
            dict(batch=2, m=tile.bm + 3, n=2 * tile.bn - 5, k=4 * tile.bk + 3),
            dict(batch=3, m=2 * tile.bm, n=tile.bn, k=256, scale=0.5),
        ):
            call = call_for("bmm", {**p, "trans_b": tb}, seed=24)
            want = f"bmm_body<{tile.bm}, {tile.bn}, {tile.bk}, {int(tb)}>"
            assert call.body == want
            check_reference(call, run_plain(gpu, call))


HALF_VS_CUBLAS = [
    ("linear_f16", dict(m=8 * 197, n=2304, k=768)),
    ("linear_bf16", dict(m=8 * 128, n=768, k=768)),
    ("bmm_f16", ATTN_VIT),
    ("bmm_bf16", PV_BERT),
]


def _cublas(call: Call) -> torch.Tensor:
    """torch's own half matmul (cuBLAS, its default reduced-precision settings)."""
    t, p = call.tensors, call.params
    if call.spec.name.startswith("linear"):
        return torch.nn.functional.linear(t["x"], t["w"], t.get("bias"))
    b = t["b"].transpose(1, 2) if p["trans_b"] else t["b"]
    return torch.bmm(t["a"], b) * p["scale"]


@pytest.mark.parametrize("case", HALF_VS_CUBLAS, ids=case_id)
def test_half_kernels_beside_cublas(gpu: Gpu, case: Case) -> None:
    """Reported, not asserted tightly: cuBLAS may round partial sums to the half
    type; both should sit within a few tolerances of the float32 reference."""
    call = call_for(*case, seed=25)
    got = run_plain(gpu, call)["y"].float()
    cublas = _cublas(call).float()
    want = call.expected["y"].float()
    ours, theirs = (got - want).abs().max().item(), (cublas - want).abs().max().item()
    print(
        f"{call.where()}: max |kernel - fp32 ref| = {ours:.3g}, max |cuBLAS half - "
        f"fp32 ref| = {theirs:.3g}, max |kernel - cuBLAS| = "
        f"{(got - cublas).abs().max().item():.3g}"
    )
    tol = tolerance(call)
    assert torch.allclose(got, cublas, rtol=4 * tol["rtol"], atol=4 * tol["atol"]), (
        f"{call.where()}: far from torch's cuBLAS half matmul (4x {tol['precision']})"
    )


# --- preemptible ----------------------------------------------------------------------

FORM_CASES: list[Case] = [
    ("bmm", ATTN_VIT),
    ("bmm", {**PV_VIT, "precision": "tf32"}),
    ("bmm", dict(batch=3, m=37, n=45, k=29, trans_b=True, precision="tf32")),
    ("bmm_f16", ATTN_BERT),
    ("bmm_bf16", dict(batch=3, m=37, n=45, k=29)),
    ("linear_f16", dict(m=8 * 197, n=3072, k=768, act="relu")),
    ("linear_bf16", dict(m=8, n=1000, k=2048)),
    ("linear_bf16", dict(m=130, n=70, k=37, act="gelu")),
]


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preemptible_without_preemption_equals_plain(gpu: Gpu, case: Case) -> None:
    check_preemptible_equals_plain(gpu, call_for(*case, seed=26), check_reference)


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_raised_flag_runs_nothing_then_the_same_counter_resumes(gpu, case) -> None:
    check_raised_flag_runs_nothing(gpu, call_for(*case, seed=27))


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_resuming_from_a_partial_counter_equals_plain(gpu, case) -> None:
    check_resume_from_counter(gpu, call_for(*case, seed=28))


@pytest.mark.parametrize(
    "case",
    [
        # Each takes tens of ms on one CTA, so the flag lands mid-run.
        ("bmm", dict(batch=16, m=512, n=512, k=512, trans_b=True)),
        ("bmm", dict(batch=32, m=1024, n=1024, k=1024, precision="tf32")),
        ("bmm_f16", dict(batch=64, m=1024, n=1024, k=1024, trans_b=True)),
        ("linear_bf16", dict(m=4096, n=4096, k=4096, act="relu")),
    ],
    ids=case_id,
)
def test_flag_raised_mid_run_stops_and_resumes_exactly(gpu: Gpu, case: Case) -> None:
    check_flag_mid_run(gpu, call_for(*case, seed=29))


# --- padded ---------------------------------------------------------------------------

PADDED_PAIRS: list[tuple[Case, Case]] = [
    (("linear", dict(m=197, n=768, k=768)), ("bmm", ATTN_VIT)),
    (("linear", dict(m=197, n=768, k=768)), ("linear_f16", LINEAR_SHAPES[0])),
    (
        (
            "conv2d",
            dict(n=2, c_in=64, h=28, w=28, c_out=64, kh=3, kw=3, padding=(1, 1)),
        ),
        ("bmm", {**PV_VIT, "precision": "tf32"}),
    ),
    (("add", {"numel": 1 << 20, "act": "relu"}), ("bmm_bf16", ATTN_BERT)),
    (("bmm_bf16", ATTN_BERT), ("relu", {"numel": (1 << 20) + 3})),
    (("linear_bf16", dict(m=8, n=1000, k=2048)), ("bmm_f16", PV_BERT)),
]


def _pair_id(pair: tuple[Case, Case]) -> str:
    (rt, _), (be, _) = pair
    return f"rt_{rt}-be_{be}"


@pytest.mark.parametrize("pair", PADDED_PAIRS, ids=_pair_id)
def test_padded_launch_produces_both_results_exactly(gpu: Gpu, pair) -> None:
    rt, be = call_for(*pair[0], seed=30), call_for(*pair[1], seed=31)
    check_padded_pair(gpu, rt, be, check_rt=check_reference, check_be=check_reference)
