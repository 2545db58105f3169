"""conv2d_f16 / conv2d_bf16 and the TF32 precision of linear / conv2d, no GPU.

Shape rules and bad params, references against independent float64
computations, body choice (tensor-core tile, direct body, TF32 or not, the act
index in the variant), virtual-block counts and shared memory, the args structs
(precision appended last, half operands as 16-bit words), and with the NVRTC
wheel: the CUDA configs' shared-memory sizes against their Python mirrors and
every tensor-core conv tile compiled without spills.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from reefd.errors import GraphError
from reefd.kernels import (
    catalog,
    ops_conv,
    ops_conv_tc,
    ops_linear,
    ops_linear_tc,
    wrappers,
)
from reefd.kernels.__main__ import sample_params
from reefd.kernels.act import ACTS
from reefd.kernels.ops_conv import conv_tc_smem_bytes
from reefd.kernels.ops_linear import gemm_smem_bytes
from reefd.kernels.ops_linear_tc import TC_TILES
from reefd.kernels.spec import TORCH_DTYPE

HALF_CONVS = {"conv2d_f16": "float16", "conv2d_bf16": "bfloat16"}
SMEM_LIMIT = 227 * 1024

# Model-zoo convs at batch 8.
STEM = dict(
    n=8, c_in=3, h=224, w=224, c_out=64, kh=7, kw=7, stride=(2, 2), padding=(3, 3)
)
LAYER1 = dict(n=8, c_in=64, h=56, w=56, c_out=64, kh=3, kw=3, padding=(1, 1))
DOWN = dict(n=8, c_in=256, h=56, w=56, c_out=512, kh=1, kw=1, stride=(2, 2))
DEPTHWISE = dict(
    n=8, c_in=96, h=56, w=56, c_out=96, kh=3, kw=3, padding=(1, 1), groups=96
)
ZOO = [STEM, LAYER1, DOWN, DEPTHWISE]
ODD = [
    dict(n=2, c_in=3, h=9, w=7, c_out=4, kh=3, kw=3),
    dict(n=1, c_in=4, h=10, w=11, c_out=6, kh=3, kw=2, stride=(2, 1), padding=(1, 2)),
    dict(n=2, c_in=64, h=10, w=10, c_out=64, kh=3, kw=3, dilation=(2, 2), groups=2),
    dict(n=2, c_in=128, h=14, w=14, c_out=128, kh=3, kw=3, padding=(1, 1), groups=32),
    dict(n=300, c_in=6, h=3, w=3, c_out=6, kh=3, kw=3, groups=2),
    dict(n=1, c_in=16, h=9, w=9, c_out=32, kh=5, kw=5, padding=(2, 2), groups=16),
]


def _full(name: str, params: dict) -> dict:
    return catalog.get(name).with_defaults(params)


def _rand(shape, dtype: str, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen).to(TORCH_DTYPE[dtype])


def _run(name: str, params: dict, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    dtype = TORCH_DTYPE[spec.operand("y").dtypes[0]]
    y = torch.full(spec.shapes(full)["y"], float("nan"), dtype=dtype)
    spec.reference({**inputs, "y": y}, full)
    return y


def _ints(body: str) -> list[int]:
    return [int(v) for v in re.findall(r"-?\d+", body.partition("<")[2])]


# --- the catalog entries -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HALF_CONVS))
def test_half_conv_specs_are_complete(name: str) -> None:
    spec = catalog.get(name)
    assert spec.summary and spec.source == "conv_tc.cu" and spec.cta_threads == 256
    assert all(op.dtypes == (HALF_CONVS[name],) for op in spec.operands)
    assert [op.name for op in spec.operands] == ["x", "w", "bias", "y"]
    assert spec.operand("bias").optional
    assert spec.variant and spec.vb_count and spec.smem_bytes
    assert sample_params(spec), "the check CLI has shapes to compile it with"
    # conv2d's params without precision, in conv2d's order.
    conv = [p.name for p in catalog.get("conv2d").params]
    assert [p.name for p in spec.params] == conv[:-1] and conv[-1] == "precision"


def test_half_conv_args_struct_has_16_bit_operands() -> None:
    struct = wrappers.args_struct(catalog.get("conv2d_bf16"))
    assert "const unsigned short* __restrict__ x;" in struct
    assert "const unsigned short* __restrict__ bias;" in struct
    assert "unsigned short* __restrict__ y;" in struct
    fields = re.findall(r"(\w+);", struct)
    want = "n c_in h w_ c_out kh kw stride_0 stride_1 padding_0 padding_1"
    assert fields[4:] == [*want.split(), "dilation_0", "dilation_1", "groups", "act"]


@pytest.mark.parametrize("name", ["linear", "conv2d"])
def test_precision_is_the_last_field_and_the_others_keep_their_order(name) -> None:
    spec = catalog.get(name)
    fields = re.findall(r"(\w+);", wrappers.args_struct(spec))
    assert fields[-2:] == ["act", "precision"]
    shape = dict(m=2, n=3, k=4) if name == "linear" else LAYER1
    assert spec.with_defaults(shape)["precision"] == "ieee"
    raw = wrappers.pack_args(
        spec, {**shape, "precision": "tf32"}, {"x": 8, "w": 16, "y": 24}
    )
    layout = wrappers.args_layout(spec).struct.from_buffer_copy(raw)
    assert layout.precision == 1 and layout.act == 0


def test_check_cli_samples_cover_the_zoo_shapes() -> None:
    for name in HALF_CONVS:
        samples = [dict(s) for s in sample_params(catalog.get(name))]
        for zoo in ZOO:
            assert any(all(s.get(k) == v for k, v in zoo.items()) for s in samples)
    conv = [dict(s) for s in sample_params(catalog.get("conv2d"))]
    assert any(s.get("precision") == "tf32" for s in conv)
    lin = [dict(s) for s in sample_params(catalog.get("linear"))]
    assert any(s.get("precision") == "tf32" for s in lin)
    assert ops_conv_tc.SAMPLE_PARAMS


# --- shape rules and bad params ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(HALF_CONVS))
@pytest.mark.parametrize("params", ZOO + ODD)
def test_half_conv_shapes_are_conv2d_shapes(name: str, params: dict) -> None:
    want = catalog.get("conv2d").shapes(_full("conv2d", params))
    assert catalog.get(name).shapes(_full(name, params)) == want


BASE = dict(n=1, c_in=4, h=6, w=6, c_out=8, kh=3, kw=3)


@pytest.mark.parametrize("name", sorted(HALF_CONVS))
@pytest.mark.parametrize(
    "params,message",
    [
        ({**BASE, "h": -1}, "h=-1"),
        ({**BASE, "c_out": 0}, "c_out=0"),
        ({**BASE, "groups": 3}, "groups=3"),
        ({**BASE, "kh": 9}, "output size -2x4"),
        ({**BASE, "stride": (0, 1)}, r"stride=\[0, 1\]"),
        ({**BASE, "padding": (-1, 0)}, r"padding=\[-1, 0\]"),
        ({**BASE, "dilation": (1,)}, r"dilation=\[1\]"),
    ],
)
def test_half_conv_bad_params_name_the_kernel_and_the_param(
    name: str, params: dict, message: str
) -> None:
    spec = catalog.get(name)
    with pytest.raises(GraphError, match=message) as err:
        spec.shapes(spec.with_defaults(params))
    assert repr(name) in str(err.value)
    with pytest.raises(GraphError, match=message):
        spec.virtual_blocks(spec.with_defaults(params))


@pytest.mark.parametrize(
    "name,params,bad",
    [
        ("conv2d_f16", {**BASE, "precision": "tf32"}, "precision"),
        ("conv2d_bf16", {**BASE, "act": "mish"}, "act"),
        ("conv2d", {**BASE, "precision": "fp16"}, "precision"),
        ("linear", dict(m=2, n=2, k=2, precision="bf16"), "precision"),
        ("linear", dict(m=2, n=2, k=2, precision=1), "precision"),
    ],
)
def test_bad_params_name_the_param(name: str, params: dict, bad: str) -> None:
    with pytest.raises(GraphError, match=bad):
        catalog.get(name).with_defaults(params)


# --- references ------------------------------------------------------------------


@pytest.mark.parametrize("act", ["none", "relu", "gelu", "hardswish"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("name", sorted(HALF_CONVS))
def test_half_conv_reference_rounds_once(name: str, act: str, with_bias: bool) -> None:
    dtype = HALF_CONVS[name]
    gen = torch.Generator().manual_seed(31)
    p = dict(n=2, c_in=6, h=7, w=6, c_out=4, kh=3, kw=2, padding=(1, 0), groups=2)
    x, w, b = (_rand(s, dtype, gen) for s in ((2, 6, 7, 6), (4, 3, 3, 2), (4,)))
    inputs = {"x": x, "w": w, **({"bias": b} if with_bias else {})}
    got = _run(name, {**p, "act": act}, inputs)
    want = F.conv2d(
        x.double(),
        w.double(),
        b.double() if with_bias else None,
        padding=(1, 0),
        groups=2,
    )
    if act != "none":
        want = {"relu": torch.relu, "gelu": F.gelu, "hardswish": F.hardswish}[act](want)
    assert got.dtype == TORCH_DTYPE[dtype]
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[dtype]
    err = (got.double() - want).abs()
    assert (err <= want.abs() * ulp * 0.51 + 1e-6).all(), err.max()


@pytest.mark.parametrize("params", [LAYER1 | {"n": 1, "h": 9, "w": 9}, ODD[3]])
def test_conv2d_tf32_reference_is_the_float32_conv(params: dict) -> None:
    gen = torch.Generator().manual_seed(32)
    spec = catalog.get("conv2d")
    shapes = spec.shapes(spec.with_defaults(params))
    x = torch.randn(shapes["x"], generator=gen)
    w = torch.randn(shapes["w"], generator=gen)
    p = {**params, "act": "relu"}
    ieee = _run("conv2d", p, {"x": x, "w": w})
    tf32 = _run("conv2d", {**p, "precision": "tf32"}, {"x": x, "w": w})
    assert torch.equal(ieee, tf32)
    want = torch.relu(
        F.conv2d(
            x, w, padding=params.get("padding", (0, 0)), groups=params.get("groups", 1)
        )
    )
    torch.testing.assert_close(tf32, want, rtol=1e-6, atol=1e-6)


def test_linear_tf32_reference_is_the_float32_product() -> None:
    gen = torch.Generator().manual_seed(33)
    x, w, b = (torch.randn(s, generator=gen) for s in ((20, 9), (5, 9), (5,)))
    p = dict(m=20, n=5, k=9, act="silu")
    inputs = {"x": x, "w": w, "bias": b}
    ieee = _run("linear", p, inputs)
    tf32 = _run("linear", {**p, "precision": "tf32"}, inputs)
    assert torch.equal(ieee, tf32)
    torch.testing.assert_close(tf32, F.silu(x @ w.T + b), rtol=1e-6, atol=1e-6)


# --- bodies, virtual blocks, shared memory, flops -----------------------------------


def test_body_choice_per_shape() -> None:
    f16, bf16 = catalog.get("conv2d_f16").body, catalog.get("conv2d_bf16").body
    relu = ACTS.index("relu")
    assert f16(_full("conv2d_f16", {**STEM, "act": "relu"})) == (
        f"conv2d_f16_body<64, 128, {relu}>"
    )
    assert f16(_full("conv2d_f16", LAYER1)) == "conv2d_f16_body<64, 64, 0>"
    assert bf16(_full("conv2d_bf16", DOWN)) == "conv2d_bf16_body<128, 64, 0>"
    dw = _full("conv2d_bf16", {**DEPTHWISE, "act": "relu6"})
    assert bf16(dw) == f"conv2d_bf16_direct_body<3, 3, {ACTS.index('relu6')}>"
    # 5x3 kernels are not unrolled in the direct body.
    odd_dw = _full("conv2d_f16", {**DEPTHWISE, "kh": 5, "padding": (2, 1)})
    assert f16(odd_dw) == "conv2d_f16_direct_body<0, 0, 0>"

    conv = catalog.get("conv2d").body
    assert conv(_full("conv2d", {**STEM, "precision": "tf32", "act": "relu"})) == (
        f"conv2d_tf32_body<64, 128, {relu}>"
    )
    assert conv(_full("conv2d", {**LAYER1, "act": "relu"})) == (
        "conv2d_body<64, 64, 8, -1>"
    )
    # Few channels per group keep the direct body whatever the precision.
    for precision in ("ieee", "tf32"):
        p = _full("conv2d", {**DEPTHWISE, "precision": precision})
        assert conv(p) == "conv2d_direct_body<3, 3, 0>"

    lin = catalog.get("linear").body
    assert lin(_full("linear", dict(m=4, n=1000, k=2048, precision="tf32"))) == (
        "linear_gemv_body<4, 4, 0>"
    )
    assert lin(_full("linear", dict(m=1576, n=3072, k=768, act="gelu"))) == (
        f"linear_body<128, 64, 8, {ACTS.index('gelu')}>"
    )
    assert lin(_full("linear", dict(m=1576, n=3072, k=768, precision="tf32"))) == (
        "linear_tf32_body<128, 64, 0>"
    )


def test_variant_tags_carry_the_act() -> None:
    spec = catalog.get("conv2d_f16")
    tags = {
        wrappers.variant_tag(spec, _full("conv2d_f16", {**LAYER1, "act": a}))
        for a in ACTS
    }
    assert len(tags) == len(ACTS)
    assert wrappers.variant_tag(spec, _full("conv2d_f16", DEPTHWISE)) == (
        "direct_3_3_0"
    )


def _cases() -> list[tuple[str, dict]]:
    cases = [(n, p) for n in HALF_CONVS for p in ZOO + ODD]
    cases += [("conv2d", {**p, "precision": "tf32"}) for p in ZOO + ODD]
    return cases


@pytest.mark.parametrize("name,params", _cases())
def test_virtual_blocks_cover_the_output_and_smem_fits(name, params) -> None:
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    y = spec.shapes(full)["y"]
    vbs = spec.virtual_blocks(full)
    body = spec.body(full)
    groups, cog = full["groups"], full["c_out"] // full["groups"]
    npix = y[0] * y[2] * y[3]
    if "direct" in body:
        assert ops_conv.is_direct(full)
        assert vbs == math.ceil(math.prod(y) / ops_conv.DIRECT_OUTPUTS_PER_VB)
        assert spec.dynamic_smem_bytes(full) == 0
    else:
        bm, bn = _ints(body)[:2]
        assert vbs == groups * math.ceil(cog / bm) * math.ceil(npix / bn)
        dtype = spec.operand("y").dtypes[0]
        want = conv_tc_smem_bytes(ops_conv.conv_tc_tile(full, name), dtype)
        assert spec.dynamic_smem_bytes(full) == want
        assert 0 < want <= SMEM_LIMIT
    macs = math.prod(y) * (full["c_in"] // groups) * full["kh"] * full["kw"]
    assert spec.flops(full) >= 2 * macs


def test_conv_tc_smem_by_hand() -> None:
    t = TC_TILES[0]  # 128 x 128
    # 3 stages x (A 128 x 80 B + B 32 k rows of 128 halves + 16 B) + [2][32] int4
    assert conv_tc_smem_bytes(t, "float16") == 3 * (128 * 80 + 32 * 272) + 1024
    # tf32: B 16 k rows of 128 floats + 32 B; table [2][16] int4
    assert conv_tc_smem_bytes(t, "float32") == 3 * (128 * 80 + 16 * 544) + 512


def test_linear_tf32_blocks_and_smem() -> None:
    spec = catalog.get("linear")
    for m, n in ((9, 5), (197, 768), (1576, 3072)):
        full = _full("linear", dict(m=m, n=n, k=64, precision="tf32"))
        bm, bn = _ints(spec.body(full))[:2]
        assert spec.virtual_blocks(full) == math.ceil(m / bm) * math.ceil(n / bn)
        assert 0 < spec.dynamic_smem_bytes(full) <= SMEM_LIMIT


def test_half_conv_flops_match_conv2d() -> None:
    for p in ZOO + ODD:
        p = {**p, "act": "relu"}
        want = catalog.get("conv2d").flops(_full("conv2d", p))
        for name in HALF_CONVS:
            assert catalog.get(name).flops(_full(name, p)) == want


# --- the CUDA side (NVRTC, no GPU) --------------------------------------------------


def _nvrtc():
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda.bindings.nvrtc missing")
    from reefd.kernels import nvrtc

    return nvrtc


def test_cuda_configs_match_the_python_mirrors() -> None:
    nvrtc = _nvrtc()
    lines = ['#include "tc_gemm.cuh"', '#include "simt_gemm.cuh"']
    kinds = {"float32": "TcTf32", "float16": "TcF16", "bfloat16": "TcBf16"}
    for dtype, kind in kinds.items():
        for t in TC_TILES:
            cfg = f"TcConvCfg<{kind}, {t.bm}, {t.bn}>"
            want = conv_tc_smem_bytes(t, dtype)
            lines.append(f'static_assert({cfg}::SMEM_BYTES == {want}, "{cfg}");')
    for t in {*ops_linear.GEMM_TILES, *ops_conv.CONV_TILES}:
        cfg = f"SimtTile<{t.bm}, {t.bn}, {t.bk}>"
        want = gemm_smem_bytes(t)
        lines.append(f'static_assert({cfg}::SMEM_FLOATS * 4 == {want}, "{cfg}");')
    lines.append('extern "C" __global__ void reef_conv_tc_probe() {}')
    compiled = nvrtc.compile_cuda(
        "\n".join(lines),
        "conv_tc_probe.cu",
        headers=wrappers.src_headers(),
        use_cache=False,
    )
    assert "reef_conv_tc_probe" in compiled.functions


def test_every_tensor_core_conv_tile_compiles_without_spills(monkeypatch) -> None:
    """Every TC_TILES tile of conv2d_f16 / bf16 / tf32 and linear tf32 (the check
    CLI compiles only the tiles its samples pick). One module per tile: a body is
    chosen when the module is generated, under the patched tile chooser."""
    _nvrtc()
    p = {**LAYER1, "act": "relu"}
    for t in TC_TILES:
        monkeypatch.setattr(ops_conv, "tc_tile", lambda *a, _t=t, **k: _t)
        monkeypatch.setattr(ops_linear_tc, "tc_tile", lambda *a, _t=t, **k: _t)
        entries = []
        for name, params in (
            ("conv2d_f16", p),
            ("conv2d_bf16", p),
            ("conv2d", {**p, "precision": "tf32"}),
            ("linear", dict(m=300, n=300, k=300, act="gelu", precision="tf32")),
        ):
            spec = catalog.get(name)
            entry = wrappers.EntryPoint.plain(spec, params)
            assert f"<{t.bm}, {t.bn}, " in spec.body(entry.params)
            entries.append(entry)
        compiled = wrappers.build_module(entries)
        for e in entries:
            res = compiled.functions[e.name]
            assert res.spill_bytes == 0 and res.stack_frame_bytes == 0, (e.name, res)
