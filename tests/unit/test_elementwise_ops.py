"""Activations and elementwise kernels without a GPU: the ACTS ABI against the
CUDA defines, apply_act against independent formulas, the shape rules of
`unary`, `binary`, `cast_i64` and `channel_affine`, their references against
independent computations (bit for bit where the rounding is documented), in-place
references, virtual-block coverage and the check CLI's samples."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reefd.errors import GraphError
from reefd.kernels import act, catalog, ops_elementwise
from reefd.kernels.__main__ import ONLY, sample_params
from reefd.kernels.act import ACTS, apply_act
from reefd.kernels.ops_elementwise import BINARY_OPS, ELEMS_PER_VB, UNARY_OPS, f32
from reefd.kernels.spec import TORCH_DTYPE, Params
from reefd.kernels.wrappers import SRC_DIR, args_struct

NEW_KERNELS = ("unary", "binary", "cast_i64", "channel_affine")
TRANSCENDENTAL = ("gelu", "gelu_tanh", "silu", "sigmoid", "tanh")
SPECIAL = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    0.0,
    1e-40,
    -3.0,
    3.0,
    6.0,
    7.5,
    -88.8,
    89.0,
    -100.0,
    1e4,
    -1e4,
    3.4e38,
    -3.4e38,
]


def run(name: str, params: Params, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference's `y` for `inputs`, each viewed as the shape rule says."""
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    shapes = spec.shapes(full)
    views = {k: v.reshape(shapes[k]) for k, v in inputs.items()}
    views["y"] = torch.full(shapes["y"], float("nan"))
    spec.reference(views, full)
    return views["y"]


def same(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Equal values, NaN where NaN (-0.0 == 0.0, as torch.equal has it)."""
    nan = got.isnan()
    return torch.equal(nan, want.isnan()) and torch.equal(got[~nan], want[~nan])


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def with_specials(n: int = 200) -> torch.Tensor:
    return torch.cat([randn(n) * 4, torch.tensor(SPECIAL)])


# --- the act ABI ------------------------------------------------------------------


def _defines(path: str, prefix: str) -> dict[str, int]:
    text = (SRC_DIR / path).read_text()
    found = re.findall(rf"#define {prefix}(\w+) \(?([\w +]+)\)?", text)
    return {name: value for name, value in found}


def test_acts_order_is_the_abi_in_the_common_header():
    assert ACTS[:2] == ("none", "relu")
    defines = _defines("reef_common.cuh", "REEF_ACT_")
    assert int(defines.pop("COUNT")) == len(ACTS)
    assert {k.lower(): int(v) for k, v in defines.items()} == {
        name: i for i, name in enumerate(ACTS)
    }


def test_unary_and_binary_op_indices_match_the_cuda_defines():
    assert UNARY_OPS[: len(ACTS)] == ACTS
    ops = _defines("elementwise.cu", "EW_OP_")
    assert ops == {"CLAMP": "REEF_ACT_COUNT + 0", "AFFINE": "REEF_ACT_COUNT + 1"}
    assert UNARY_OPS[len(ACTS) :] == ("clamp", "affine")
    bins = _defines("elementwise.cu", "EW_BIN_")
    assert {k.lower(): int(v) for k, v in bins.items()} == {
        op: i for i, op in enumerate(BINARY_OPS)
    }


def _formula(x: torch.Tensor, name: str) -> torch.Tensor:
    """Each activation from its definition, in float64."""
    x = x.double()
    sig = 1 / (1 + torch.exp(-x))
    return {
        "none": x,
        "relu": torch.where(x < 0, 0.0, x),
        "relu6": torch.where(x < 0, 0.0, torch.where(x > 6, 6.0, x)),
        "gelu": x * 0.5 * (1 + torch.erf(x / math.sqrt(2))),
        "gelu_tanh": 0.5
        * x
        * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        "silu": x * sig,
        "sigmoid": sig,
        "tanh": (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1),
        "hardswish": x
        * torch.where(x + 3 < 0, 0.0, torch.where(x + 3 > 6, 6.0, x + 3))
        / 6,
    }[name]


@pytest.mark.parametrize("name", ACTS)
def test_apply_act_matches_its_formula(name):
    x = randn(1000, seed=1) * 4
    torch.testing.assert_close(
        apply_act(x, name).double(), _formula(x, name), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", ["relu", "relu6", "hardswish", *TRANSCENDENTAL])
def test_apply_act_keeps_nan(name):
    got = apply_act(torch.tensor([float("nan"), 1.0]), name)
    assert got[0].isnan() and not got[1].isnan()


def test_apply_act_rejects_unknown_names():
    with pytest.raises(ValueError, match="'swish'"):
        apply_act(torch.zeros(1), "swish")
    assert act.act_flops("none") == 0 and act.act_flops("gelu") == 1


@pytest.mark.parametrize("name", ["linear", "conv2d", "add", "binary"])
def test_kernels_with_an_act_param_accept_every_act(name):
    param = next(p for p in catalog.get(name).params if p.name == "act")
    assert param.choices == ACTS and param.default == "none"


@pytest.mark.parametrize("name", ACTS)
def test_linear_and_conv2d_apply_every_act(name):
    x, w, b = randn(5, 7, seed=2), randn(3, 7, seed=3), randn(3, seed=4)
    got = run("linear", dict(m=5, n=3, k=7, act=name), {"x": x, "w": w, "bias": b})
    assert same(got, apply_act(F.linear(x, w, b), name))
    x, w = randn(1, 2, 5, 5, seed=5), randn(4, 2, 3, 3, seed=6)
    params = dict(n=1, c_in=2, h=5, w=5, c_out=4, kh=3, kw=3, act=name)
    got = run("conv2d", params, {"x": x, "w": w})
    assert same(got, apply_act(F.conv2d(x, w), name))


@pytest.mark.parametrize("name", ACTS)
def test_add_applies_every_act(name):
    a, b = with_specials(), randn(217, seed=7)
    got = run("add", {"numel": 217, "act": name}, {"a": a, "b": b})
    assert same(got, apply_act(a + b, name))


# --- unary ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTS)
def test_unary_act_ops_are_apply_act(name):
    x = with_specials()
    assert same(
        run("unary", {"numel": x.numel(), "op": name}, {"x": x}), apply_act(x, name)
    )


@pytest.mark.parametrize("lo,hi", [(-1.5, 2.0), (0.0, 6.0), (2.0, -1.0), (0.1, 0.3)])
def test_unary_clamp_is_min_max_keeping_nan(lo, hi):
    x = with_specials()
    got = run(
        "unary", {"numel": x.numel(), "op": "clamp", "lo": lo, "hi": hi}, {"x": x}
    )
    lo32, hi32 = np.float32(lo), np.float32(hi)  # the C args carry float32
    xs = x.numpy()
    want = np.where(xs < lo32, lo32, xs)
    want = torch.from_numpy(np.where(want > hi32, hi32, want))
    assert same(got, want)
    assert got[x.isnan()].isnan().all()


def test_unary_clamp_defaults_change_nothing_finite():
    x = with_specials()
    got = run("unary", {"numel": x.numel(), "op": "clamp"}, {"x": x})
    assert same(got, x.clamp(-3.4028234663852886e38, 3.4028234663852886e38))
    assert torch.equal(got[x.isfinite()], x[x.isfinite()])


@pytest.mark.parametrize("scale,shift", [(0.125, 0.0), (0.1, 0.7), (-3.3, 1e-3)])
def test_unary_affine_rounds_twice_in_float32(scale, shift):
    """y = fl(fl(x * scale) + shift) with scale and shift rounded to float32."""
    x = randn(5000, seed=8) * 100
    params = {"numel": x.numel(), "op": "affine", "scale": scale, "shift": shift}
    got = run("unary", params, {"x": x}).numpy()
    with np.errstate(all="ignore"):
        want = x.numpy() * np.float32(scale) + np.float32(shift)
    assert want.dtype == np.float32
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


def test_f32_rounds_like_the_c_args():
    assert f32(0.1) == float(np.float32(0.1))
    assert f32(1e39) == math.inf
    assert f32(-3.4028234663852886e38) == -3.4028234663852886e38


def test_vit_scale_by_eighth_is_exact_division():
    x = randn(4096, seed=9)
    got = run("unary", {"numel": 4096, "op": "affine", "scale": 0.125}, {"x": x})
    assert torch.equal(got, x / 8)


# --- binary -----------------------------------------------------------------------

BROADCASTS = [
    ((2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 5)),  # no broadcasting
    ((2, 3, 4, 5), (2, 3, 4, 5), (1, 1, 1, 1)),  # scalar
    ((1, 1, 6, 8), (1, 1, 6, 8), (1, 1, 1, 8)),  # row
    ((1, 1, 6, 8), (1, 1, 6, 1), (1, 1, 6, 8)),  # column
    ((8, 12, 16, 16), (8, 12, 16, 16), (8, 1, 1, 16)),  # attention mask
    ((3, 4, 5, 6), (3, 1, 5, 1), (1, 4, 1, 6)),  # both sides
    ((2, 3, 4, 5), (1, 3, 1, 5), (1, 3, 4, 1)),  # output wider than either in dim 0
]


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("shape,a_shape,b_shape", BROADCASTS)
def test_binary_matches_expanded_operands(op, shape, a_shape, b_shape):
    a, b = randn(*a_shape, seed=10), randn(*b_shape, seed=11) + 0.5
    params = dict(op=op, shape=shape, a_shape=a_shape, b_shape=b_shape)
    got = run("binary", params, {"a": a, "b": b})
    ea, eb = a.expand(shape).contiguous(), b.expand(shape).contiguous()
    want = {"add": ea + eb, "sub": ea - eb, "mul": ea * eb, "div": ea / eb}[op]
    assert got.shape == shape
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", ACTS)
def test_binary_applies_act_after_the_op(name):
    a, b = with_specials().reshape(1, 1, 1, -1), randn(1, seed=12).reshape(1, 1, 1, 1)
    shape = tuple(a.shape)
    params = dict(op="mul", shape=shape, a_shape=shape, b_shape=(1, 1, 1, 1), act=name)
    assert same(run("binary", params, {"a": a, "b": b}), apply_act(a * b, name))


BAD_BINARY = [
    (dict(a_shape=(8, 12, 128, 128), b_shape=(8, 12, 1, 64)), "operand 'b' dim 3"),
    (dict(a_shape=(8, 2, 128, 128), b_shape=(8, 1, 1, 128)), "operand 'a' dim 1"),
    (dict(shape=(8, 12, 128), a_shape=(8, 12, 128), b_shape=(8, 1, 128)), "shape="),
    (dict(shape=(8, 0, 128, 128)), "shape=[8, 0, 128, 128]"),
    (dict(a_shape=(8, 12, 128, 0)), "a_shape=[8, 12, 128, 0]"),
    (dict(op="pow"), "'op'='pow'"),
    (dict(act="swish"), "'act'='swish'"),
]


@pytest.mark.parametrize("change,needle", BAD_BINARY)
def test_binary_bad_shapes_name_the_operand_and_dim(change, needle):
    shape = (8, 12, 128, 128)
    params = dict(op="add", shape=shape, a_shape=shape, b_shape=(8, 1, 1, 128))
    spec = catalog.get("binary")
    with pytest.raises(GraphError, match=re.escape(needle)) as info:
        spec.shapes(spec.with_defaults({**params, **change}))
    assert "'binary'" in str(info.value)


def test_binary_args_struct_has_four_ints_per_shape():
    struct = args_struct(catalog.get("binary"))
    for name in ("shape", "a_shape", "b_shape"):
        assert all(f"int {name}_{i};" in struct for i in range(4))
    assert "const float* a;" in struct and "float* y;" in struct


# --- cast_i64 ---------------------------------------------------------------------


def test_cast_i64_rounds_to_nearest_float32():
    values = [0, -1, 7, 2**24 + 1, 2**24 + 3, 2**53 + 1, -(2**62) - 1, 2**63 - 1]
    x = torch.tensor(values, dtype=torch.int64)
    got = run("cast_i64", {"numel": len(values)}, {"x": x})
    want = np.array(values, dtype=np.int64).astype(np.float32)
    assert got.dtype == torch.float32
    assert np.array_equal(got.numpy(), want)


def test_cast_i64_operand_types():
    spec = catalog.get("cast_i64")
    assert spec.operand("x").dtypes == ("int64",)
    assert spec.operand("y").dtypes == ("float32",)
    assert "const long long* __restrict__ x;" in args_struct(spec)
    params = spec.with_defaults({"numel": 10})
    assert spec.extents_bytes(params, {"x": "int64", "y": "float32"}) == {
        "x": 80,
        "y": 40,
    }


# --- channel_affine ---------------------------------------------------------------


@pytest.mark.parametrize("n,c,inner", [(2, 3, 5), (8, 16, 49), (3, 7, 1), (1, 1, 64)])
def test_channel_affine_rounds_twice_per_channel(n, c, inner):
    x = randn(n, c, inner, seed=13) * 10
    scale, shift = randn(c, seed=14), randn(c, seed=15)
    params = dict(n=n, c=c, inner=inner)
    got = run("channel_affine", params, {"x": x, "scale": scale, "shift": shift})
    xs, s, t = x.numpy(), scale.numpy(), shift.numpy()
    want = np.empty_like(xs)
    for ch in range(c):
        want[:, ch, :] = xs[:, ch, :] * s[ch] + t[ch]  # float32: two roundings
    assert np.array_equal(got.numpy().view(np.int32), want.view(np.int32))


@pytest.mark.parametrize("name", ACTS)
def test_channel_affine_applies_act(name):
    x, s, t = randn(2, 4, 9, seed=16) * 3, randn(4, seed=17), randn(4, seed=18)
    params = dict(n=2, c=4, inner=9, act=name)
    got = run("channel_affine", params, {"x": x, "scale": s, "shift": t})
    want = apply_act(x * s.view(1, 4, 1) + t.view(1, 4, 1), name)
    assert same(got, want)


# --- shape rules, in place, virtual blocks --------------------------------------

BAD_PARAMS = [
    ("unary", dict(numel=0, op="relu"), "numel=0"),
    ("unary", dict(numel=4, op="softplus"), "'op'='softplus'"),
    ("unary", dict(numel=4, op="clamp", lo=float("nan")), "lo=nan"),
    ("unary", dict(numel=4, op="affine", scale=float("nan")), "scale=nan"),
    ("unary", dict(numel=4, op="affine", shift="1"), "'shift'='1' is not float"),
    ("cast_i64", dict(numel=-1), "numel=-1"),
    ("channel_affine", dict(n=1, c=0, inner=4), "c=0"),
    ("channel_affine", dict(n=1, c=2, inner=-4), "inner=-4"),
    ("channel_affine", dict(n=0, c=2, inner=4), "n=0"),
    ("channel_affine", dict(n=1, c=2, inner=4, act="elu"), "'act'='elu'"),
    ("add", dict(numel=4, act="swish"), "'act'='swish'"),
]


@pytest.mark.parametrize("name,params,needle", BAD_PARAMS)
def test_bad_params_raise_graph_error_naming_the_param(name, params, needle):
    spec = catalog.get(name)
    with pytest.raises(GraphError) as info:
        spec.shapes(spec.with_defaults(params))
    assert needle in str(info.value)
    assert repr(name) in str(info.value)


def _aliased(name: str) -> tuple[dict, dict[str, torch.Tensor], torch.Tensor]:
    """(params, operand views with y on an input's buffer, expected y)."""
    buf = randn(2 * 3 * 40, seed=19)
    before = buf.clone()
    if name == "unary":
        params = {"numel": buf.numel(), "op": "gelu"}
        return params, {"x": buf, "y": buf}, F.gelu(before)
    if name == "binary":
        shape, b = (1, 2, 3, 40), randn(1, 1, 1, 40, seed=20)
        params = dict(op="sub", shape=shape, a_shape=shape, b_shape=(1, 1, 1, 40))
        views = {"a": buf.view(shape), "b": b, "y": buf.view(shape)}
        return params, views, (before.view(shape) - b).reshape(-1)
    s, t = randn(3, seed=21), randn(3, seed=22)
    params = dict(n=2, c=3, inner=40, act="silu")
    x = buf.view(2, 3, 40)
    want = F.silu(before.view(2, 3, 40) * s.view(1, 3, 1) + t.view(1, 3, 1))
    return params, {"x": x, "scale": s, "shift": t, "y": x}, want.reshape(-1)


@pytest.mark.parametrize("name", ["unary", "binary", "channel_affine"])
def test_inplace_references_work_when_output_aliases_input(name):
    spec = catalog.get(name)
    assert spec.inplace_ok
    params, views, want = _aliased(name)
    spec.reference(views, spec.with_defaults(params))
    out = views["y"].reshape(-1)
    assert same(out, want)


def test_cast_and_copy_never_run_in_place():
    assert not catalog.get("cast_i64").inplace_ok
    assert not catalog.get("copy").inplace_ok


VB_CASES = [
    ("relu", dict(numel=1)),
    ("unary", dict(numel=1025, op="tanh")),
    ("cast_i64", dict(numel=3 * 10**6 + 3)),
    (
        "binary",
        dict(
            op="add",
            shape=(8, 12, 128, 128),
            a_shape=(8, 12, 128, 128),
            b_shape=(8, 1, 1, 128),
        ),
    ),
    (
        "binary",
        dict(op="div", shape=(1, 1, 1, 3), a_shape=(1, 1, 1, 1), b_shape=(1, 1, 1, 3)),
    ),
    ("channel_affine", dict(n=8, c=256, inner=56 * 56)),
    ("channel_affine", dict(n=3, c=5, inner=7)),
]


@pytest.mark.parametrize("name,params", VB_CASES)
def test_virtual_blocks_cover_the_output_exactly(name, params):
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    numel = math.prod(spec.shapes(full)["y"])
    vbs = spec.virtual_blocks(full)
    assert (vbs - 1) * ELEMS_PER_VB < numel <= vbs * ELEMS_PER_VB
    assert spec.flops(full) >= numel
    assert spec.dynamic_smem_bytes(full) == 0
    assert spec.body(full) == f"{name}_body"
    assert spec.cta_threads == 256 and spec.source == "elementwise.cu"


def test_every_module_sample_is_valid_and_names_a_kernel_here():
    names = {s.name for s in catalog.all_specs() if s.source == "elementwise.cu"}
    for sample in ops_elementwise.SAMPLE_PARAMS:
        assert sample.get(ONLY, "relu") in names, sample
    for name in names:
        spec = catalog.get(name)
        samples = sample_params(spec)
        assert samples, name
        for sample in samples:
            spec.shapes(spec.with_defaults(sample))
    gelu = [s for s in sample_params(catalog.get("unary")) if s["op"] == "gelu"]
    assert gelu == [{"numel": 8 * 128 * 3072, "op": "gelu"}]


def test_reference_writes_the_operand_dtypes():
    spec = catalog.get("cast_i64")
    x = torch.arange(-5, 5, dtype=TORCH_DTYPE["int64"])
    y = torch.empty(10, dtype=TORCH_DTYPE["float32"])
    spec.reference({"x": x, "y": y}, spec.with_defaults({"numel": 10}))
    assert torch.equal(y, torch.arange(-5.0, 5.0))
