"""bmm, bmm_f16/bf16 and linear_f16/bf16 without a GPU: shape rules, params,
references against independent torch computations, tile choice, virtual-block
counts, shared memory, the args structs, and (with the NVRTC wheel) the CUDA
tile's shared-memory size against the Python mirror."""

from __future__ import annotations

import math
import re

import pytest
import torch

from reefd.errors import GraphError
from reefd.kernels import catalog, ops_bmm, ops_linear_tc, wrappers
from reefd.kernels.__main__ import sample_params
from reefd.kernels.ops_linear_tc import TC_TILES, tc_smem_bytes
from reefd.kernels.spec import TORCH_DTYPE

BMMS = {"bmm": "float32", "bmm_f16": "float16", "bmm_bf16": "bfloat16"}
LINEARS = {"linear_f16": "float16", "linear_bf16": "bfloat16"}
KERNELS = {**BMMS, **LINEARS}
SMEM_LIMIT = 227 * 1024

# Model-zoo shapes at batch 8: ViT-B/16 (197 tokens, 12 heads, head dim 64),
# DistilBERT (seq 128), ResNet-50's classifier.
ZOO_LINEAR = [
    dict(m=8 * 197, n=2304, k=768),  # ViT-B qkv
    dict(m=8 * 197, n=3072, k=768, act="relu"),  # ViT-B MLP up
    dict(m=8 * 128, n=768, k=768),  # DistilBERT projection
    dict(m=8, n=1000, k=2048),  # classifier
]
ZOO_BMM = [
    dict(batch=96, m=197, n=197, k=64, trans_b=True, scale=0.125),  # ViT-B Q K^T
    dict(batch=96, m=128, n=128, k=64, trans_b=True, scale=0.125),  # DistilBERT
    dict(batch=96, m=197, n=64, k=197),  # ViT-B P @ V
    dict(batch=96, m=128, n=64, k=128),  # DistilBERT P @ V
]


def _full(name: str, params: dict) -> dict:
    return catalog.get(name).with_defaults(params)


def _tile_of(body: str) -> tuple[int, int]:
    """(BM, BN) from a body like `bmm_body<128, 64, 8, 1>`."""
    bm, bn = re.findall(r"\d+", body.partition("<")[2])[:2]
    return int(bm), int(bn)


def _rand(shape: tuple[int, ...], dtype: str, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen).to(TORCH_DTYPE[dtype])


def _run(name: str, params: dict, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    shape = spec.shapes(full)["y"]
    y = torch.full(shape, float("nan"), dtype=TORCH_DTYPE[KERNELS[name]])
    spec.reference({**inputs, "y": y}, full)
    return y


# --- the catalog entries -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_specs_are_complete(name: str) -> None:
    spec = catalog.get(name)
    assert spec.summary and spec.source and spec.cta_threads == 256
    assert all(op.dtypes == (KERNELS[name],) for op in spec.operands)
    assert [op.name for op in spec.operands if op.access == "write"] == ["y"]
    assert spec.variant and spec.vb_count and spec.smem_bytes
    assert sample_params(spec), "the check CLI has shapes to compile it with"


def test_half_operands_are_raw_16_bit_words_in_the_args_struct() -> None:
    struct = wrappers.args_struct(catalog.get("linear_bf16"))
    assert "const unsigned short* __restrict__ x;" in struct
    assert "const unsigned short* __restrict__ bias;" in struct
    assert "unsigned short* __restrict__ y;" in struct
    bmm = wrappers.args_struct(catalog.get("bmm"))
    fields = re.findall(r"(\w+);", bmm)
    assert fields == ["a", "b", "y", "batch", "m", "n", "k", "trans_b", "scale",
                      "precision"]  # fmt: skip
    assert "float scale;" in bmm and "const float* __restrict__ a;" in bmm


# --- shape rules and bad params ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(BMMS))
def test_bmm_shapes_follow_trans_b(name: str) -> None:
    spec = catalog.get(name)
    p = dict(batch=3, m=5, n=7, k=11)
    assert spec.shapes(_full(name, p)) == {
        "a": (3, 5, 11),
        "b": (3, 11, 7),
        "y": (3, 5, 7),
    }
    assert spec.shapes(_full(name, {**p, "trans_b": True}))["b"] == (3, 7, 11)


@pytest.mark.parametrize("name", sorted(LINEARS))
def test_linear_half_shapes(name: str) -> None:
    shapes = catalog.get(name).shapes(_full(name, dict(m=5, n=7, k=11)))
    assert shapes == {"x": (5, 11), "w": (7, 11), "bias": (7,), "y": (5, 7)}


@pytest.mark.parametrize(
    "name,params,bad",
    [
        ("bmm", dict(batch=0, m=2, n=2, k=2), "batch"),
        ("bmm", dict(batch=1, m=2, n=-1, k=2), "n"),
        ("bmm_f16", dict(batch=1, m=0, n=2, k=2), "m"),
        ("bmm_bf16", dict(batch=1, m=2, n=2, k=0), "k"),
        ("linear_f16", dict(m=0, n=2, k=2), "m"),
        ("linear_bf16", dict(m=2, n=2, k=0), "k"),
    ],
)
def test_non_positive_dims_name_the_param(name: str, params: dict, bad: str) -> None:
    spec = catalog.get(name)
    with pytest.raises(GraphError, match=rf"\b{bad}=") as err:
        spec.shapes(spec.with_defaults(params))
    assert name in str(err.value)


@pytest.mark.parametrize(
    "name,params,bad",
    [
        ("bmm", dict(batch=1, m=2, n=2, k=2, precision="fp64"), "precision"),
        ("bmm", dict(batch=1, m=2, n=2, k=2, trans_b=1), "trans_b"),
        ("bmm", dict(batch=1, m=2, n=2, k=2, scale="x"), "scale"),
        ("bmm_f16", dict(batch=1, m=2, n=2, k=2, precision="tf32"), "precision"),
        ("linear_f16", dict(m=2, n=2, k=2, act="bogus"), "act"),
        ("linear_bf16", dict(m=2, n=2), "k"),
    ],
)
def test_bad_params_name_the_param(name: str, params: dict, bad: str) -> None:
    with pytest.raises(GraphError, match=bad):
        catalog.get(name).with_defaults(params)


# --- references ---------------------------------------------------------------------


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("name", sorted(BMMS))
def test_bmm_reference_matches_an_independent_computation(name, trans_b) -> None:
    dtype = BMMS[name]
    gen = torch.Generator().manual_seed(11)
    batch, m, n, k, scale = 3, 5, 6, 7, 0.25
    a = _rand((batch, m, k), dtype, gen)
    b = _rand((batch, n, k) if trans_b else (batch, k, n), dtype, gen)
    params = dict(batch=batch, m=m, n=n, k=k, trans_b=trans_b, scale=scale)
    got = _run(name, params, {"a": a, "b": b})
    bk = b.double().transpose(1, 2) if trans_b else b.double()
    want = torch.einsum("imk,ikn->imn", a.double(), bk) * scale
    assert got.dtype == TORCH_DTYPE[dtype]
    tol = {"float32": 1e-5, "float16": 1e-3, "bfloat16": 8e-3}[dtype]
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_bmm_tf32_reference_is_the_float32_product() -> None:
    gen = torch.Generator().manual_seed(12)
    a, b = torch.randn(2, 4, 9, generator=gen), torch.randn(2, 9, 3, generator=gen)
    p = dict(batch=2, m=4, n=3, k=9)
    ieee = _run("bmm", {**p, "precision": "ieee"}, {"a": a, "b": b})
    tf32 = _run("bmm", {**p, "precision": "tf32"}, {"a": a, "b": b})
    assert torch.equal(ieee, tf32)
    torch.testing.assert_close(ieee, a @ b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("act", ["none", "relu", "gelu"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("name", sorted(LINEARS))
def test_linear_half_reference_rounds_once(name, act, with_bias) -> None:
    dtype = TORCH_DTYPE[LINEARS[name]]
    gen = torch.Generator().manual_seed(13)
    x, w, bias = (_rand(s, LINEARS[name], gen) for s in ((5, 33), (4, 33), (4,)))
    inputs = {"x": x, "w": w, **({"bias": bias} if with_bias else {})}
    got = _run(name, dict(m=5, n=4, k=33, act=act), inputs)
    want = x.double() @ w.double().T + (bias.double() if with_bias else 0.0)
    if act == "relu":
        want = want.clamp_min(0.0)
        assert (got == 0).any()
    elif act == "gelu":
        want = torch.nn.functional.gelu(want)
    assert got.dtype == dtype
    # One rounding of an exact-enough float32 sum: within half an ulp, plus a
    # little for the float32 accumulation.
    ulp = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[dtype]
    err = (got.double() - want).abs()
    assert (err <= want.abs() * ulp * 0.51 + 1e-6).all(), err.max()


# --- tiles, virtual blocks, shared memory, flops ----------------------------------


def test_tile_choice_per_shape() -> None:
    body = catalog.get("bmm").body
    assert body(_full("bmm", ZOO_BMM[0])) == "bmm_body<128, 128, 8, 1>"
    assert body(_full("bmm", {**ZOO_BMM[3]})) == "bmm_body<128, 64, 8, 0>"
    tf32 = _full("bmm", {**ZOO_BMM[1], "precision": "tf32"})
    assert body(tf32) == "bmm_tf32_body<128, 128, 1>"
    assert catalog.get("bmm_f16").body(_full("bmm_f16", ZOO_BMM[2])) == (
        "bmm_f16_body<64, 64, 0>"
    )
    lin = catalog.get("linear_bf16").body
    assert lin(_full("linear_bf16", ZOO_LINEAR[0])) == "linear_bf16_body<128, 128>"
    assert lin(_full("linear_bf16", ZOO_LINEAR[3])) == "linear_bf16_body<32, 64>"
    # Few tiles: a big tile would leave most SMs idle.
    small = _full("linear_f16", dict(m=64, n=512, k=64))
    assert _tile_of(catalog.get("linear_f16").body(small)) != (128, 128)


def _cases() -> list[tuple[str, dict]]:
    odd = [dict(m=1, n=1, k=1), dict(m=130, n=70, k=37), dict(m=33, n=65, k=9)]
    cases = [(n, p) for n in LINEARS for p in ZOO_LINEAR + odd]
    bmms = ZOO_BMM + [dict(batch=2, trans_b=tb, **p) for p in odd for tb in (0, 1)]
    for name in BMMS:
        for p in bmms:
            p = {**p, "trans_b": bool(p.get("trans_b"))}
            cases.append((name, p))
            if name == "bmm":
                cases.append((name, {**p, "precision": "tf32"}))
    return cases


@pytest.mark.parametrize("name,params", _cases())
def test_virtual_blocks_cover_the_output_and_smem_fits(name, params) -> None:
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    bm, bn = _tile_of(spec.body(full))
    batch = full.get("batch", 1)
    vbs = spec.virtual_blocks(full)
    assert vbs == batch * math.ceil(full["m"] / bm) * math.ceil(full["n"] / bn)
    # Every output element lies in exactly one virtual block's tile.
    assert vbs * bm * bn >= batch * full["m"] * full["n"]
    assert 0 < spec.dynamic_smem_bytes(full) <= SMEM_LIMIT
    assert spec.flops(full) >= 2 * batch * full["m"] * full["n"] * full["k"]


def test_tensor_core_smem_mirror_by_hand() -> None:
    t = TC_TILES[0]  # 128 x 128
    # 3 stages x (A 128 x 80 B + B 128 x 80 B)
    assert tc_smem_bytes(t, "float16", b_kmajor=True) == 3 * 2 * 128 * 80
    # n-contiguous B: 32 k rows of 128 halves + 16 B pad
    assert tc_smem_bytes(t, "bfloat16", False) == 3 * (128 * 80 + 32 * 272)
    # tf32: 16 k rows of 128 floats + 32 B pad
    assert tc_smem_bytes(t, "float32", False) == 3 * (128 * 80 + 16 * 544)


def test_bmm_flops() -> None:
    p = _full("bmm", dict(batch=2, m=3, n=4, k=5))
    assert catalog.get("bmm").flops(p) == 2 * 2 * 3 * 4 * 5 + 2 * 3 * 4
    lin = _full("linear_f16", dict(m=3, n=4, k=5, act="relu"))
    assert catalog.get("linear_f16").flops(lin) == 2 * 3 * 4 * 5 + 2 * 3 * 4


def test_check_cli_samples_cover_the_zoo_shapes() -> None:
    bmm = [dict(s) for s in sample_params(catalog.get("bmm"))]
    assert any(s.get("precision") == "tf32" for s in bmm)
    assert any(s.get("precision", "ieee") == "ieee" for s in bmm)
    assert any(s["m"] == 197 and s.get("trans_b") for s in bmm)
    for name in LINEARS:
        ms = {(s["m"], s["n"]) for s in sample_params(catalog.get(name))}
        assert {(1576, 2304), (1576, 3072), (1024, 768), (8, 1000)} <= ms
    assert sample_params(catalog.get("bmm_f16"))


# --- the CUDA tile agrees with the Python mirror (NVRTC, no GPU) --------------------


def test_cuda_tile_smem_matches_the_python_mirror() -> None:
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda.bindings.nvrtc missing")
    from reefd.kernels import nvrtc

    kinds = {"float32": "TcTf32", "float16": "TcF16", "bfloat16": "TcBf16"}
    lines = ['#include "tc_gemm.cuh"']
    for dtype, kind in kinds.items():
        for t in TC_TILES:
            for kmajor in (True, False):
                want = tc_smem_bytes(t, dtype, kmajor)
                cfg = f"TcCfg<{kind}, {t.bm}, {t.bn}, {str(kmajor).lower()}>"
                lines.append(f"static_assert({cfg}::SMEM_BYTES == {want}, "
                             f'"{cfg}");')  # fmt: skip
    lines.append('extern "C" __global__ void reef_tc_probe() {}')
    compiled = nvrtc.compile_cuda(
        "\n".join(lines),
        "tc_probe.cu",
        headers=wrappers.src_headers(),
        use_cache=False,
    )
    assert "reef_tc_probe" in compiled.functions


def test_ops_modules_export_their_samples() -> None:
    assert ops_bmm.SAMPLE_PARAMS and ops_linear_tc.SAMPLE_PARAMS
