"""Activations and elementwise kernels on a real GPU.

`unary`, `add`, `binary`, `cast_i64` and `channel_affine` with every op and act
(and linear / conv2d with every act epilogue), compiled by NVRTC and launched
through tests/gpu/harness.py, against torch on the same GPU: flat sizes around
the 4-element vector and the 1024-element virtual block, broadcasting patterns,
model-zoo shapes, special values (NaN, +-inf, -0.0, huge |x|), buffers only
4-byte aligned (the scalar paths) and in place. Then the preemptible form
(preempted, resumed) and the padded form beside an RT kernel, bit for bit
against the plain form.

Precision: float32 kernels vs torch's float32 CUDA kernels, rtol = atol = 1e-5,
except for gelu, gelu_tanh, silu, sigmoid and tanh (TRANSCENDENTAL): rtol =
1e-4, atol = 1e-5. Those go through expf / erff / tanhf (CUDA's are within 2 ulp)
and torch's kernels may order or fuse the multiply-adds around them differently;
where 1 + erf(...) or 1 + tanh(...) cancels (x << 0), a few ulp there become a
large relative but tiny absolute error (about |x| * 2^-24 < 1e-5). Ops with a
documented rounding (relu, relu6, clamp, affine, add/sub/mul/div, channel_affine,
cast_i64) must equal torch exactly (`test_exact_ops_equal_torch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from reefd.kernels.act import ACTS
from reefd.kernels.ops_elementwise import BINARY_OPS, UNARY_OPS
from tests.gpu.harness import (
    DEVICE,
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

EXACT_TOL = (1e-5, 1e-5)
TRANSCENDENTAL = frozenset({"gelu", "gelu_tanh", "silu", "sigmoid", "tanh"})
TRANSCENDENTAL_TOL = (1e-4, 1e-5)
SCALE = 4.0
"""Inputs are N(0, 4^2): they cross relu6's 6, hardswish's +-3 and the tails."""

FLAT = [1, 3, 1023, 1025, 3 * 10**6 + 3]
SPECIAL = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    0.0,
    1e-40,
    -1e-40,
    -3.0,
    3.0,
    6.0,
    -88.8,
    88.8,
    -89.0,
    100.0,
    -100.0,
    1e4,
    -1e4,
    1e30,
    -1e30,
    3.4e38,
    -3.4e38,
]
INT64_EDGES = [0, -1, 2**24 + 1, 2**53 + 1, -(2**62) - 1, 2**63 - 1, -(2**63)]

Fill = Callable[[torch.Size, torch.Generator], torch.Tensor]


# --- building calls and checking them --------------------------------------------


def tolerance(params: dict[str, Any]) -> tuple[float, float]:
    """(rtol, atol) for a call: looser where a transcendental act is applied."""
    if {params.get("op"), params.get("act")} & TRANSCENDENTAL:
        return TRANSCENDENTAL_TOL
    return EXACT_TOL


def _int64_ids(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    x = torch.randint(
        -(2**40), 2**40, shape, generator=gen, device=DEVICE, dtype=torch.int64
    )
    edges = torch.tensor(INT64_EDGES, device=DEVICE, dtype=torch.int64)
    flat = x.view(-1)
    k = min(flat.numel(), edges.numel())
    flat[:k] = edges[:k]
    return x


def _specials(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """N(0, 50^2) with every third element one of SPECIAL, in turn."""
    x = torch.randn(shape, generator=gen, device=DEVICE) * 50
    flat = x.view(-1)
    where = torch.arange(0, flat.numel(), 3, device=DEVICE)
    values = torch.tensor(SPECIAL, device=DEVICE)
    flat[where] = values[torch.arange(where.numel(), device=DEVICE) % len(SPECIAL)]
    return x


def call_of(name: str, params: dict[str, Any], **kwargs: Any) -> Call:
    """make_call with N(0, SCALE^2) inputs and int64 ids for cast_i64."""
    fill: dict[str, Fill] = dict(kwargs.pop("fill", {}))
    if name == "cast_i64":
        fill.setdefault("x", _int64_ids)
    return make_call(name, params, scale=SCALE, fill=fill, **kwargs)


def assert_close(call: Call, got: dict[str, torch.Tensor]) -> None:
    """Within tolerance(params) of torch; NaN and +-inf exactly where torch's."""
    rtol, atol = tolerance(call.params)
    for name in call.outputs:
        want = call.expected[name]
        diff = (got[name] - want).abs().nan_to_num(float("inf")).max().item()
        assert torch.equal(got[name].isnan(), want.isnan()), (
            f"{call.where()}: output {name!r} has NaN where torch has none, or "
            "the other way round"
        )
        assert torch.allclose(got[name], want, rtol=rtol, atol=atol, equal_nan=True), (
            f"{call.where()}: output {name!r} differs from torch by up to {diff:.3g} "
            f"(float32 vs torch's CUDA kernels, TF32 off, rtol={rtol} atol={atol}; "
            "see this module's docstring)"
        )


def assert_same_values(call: Call, got: dict[str, torch.Tensor]) -> None:
    """Equal to torch value for value (NaN where NaN; -0.0 == 0.0)."""
    for name in call.outputs:
        a, b = got[name], call.expected[name]
        nan = a.isnan()
        same = torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])
        diff = (a - b).abs().nan_to_num(0.0).max().item()
        assert same, (
            f"{call.where()}: output {name!r} is not exactly torch's (up to "
            f"{diff:.3g} apart); this op's rounding is documented as torch's"
        )


def _bshape(
    op: str, shape: tuple, a_shape: tuple, b_shape: tuple, act: str = "none"
) -> dict[str, Any]:
    return dict(op=op, shape=shape, a_shape=a_shape, b_shape=b_shape, act=act)


# --- cases ------------------------------------------------------------------------

UNARY_EXTRA = {
    "clamp": {"lo": -1.5, "hi": 2.5},
    "affine": {"scale": 0.1, "shift": -0.7},
}
MASK = ((8, 12, 128, 128), (8, 12, 128, 128), (8, 1, 1, 128))
BROADCASTS = [
    ((2, 3, 33, 64), (2, 3, 33, 64), (2, 3, 33, 64)),  # none
    ((2, 3, 33, 64), (2, 3, 33, 64), (1, 1, 1, 1)),  # scalar
    ((2, 3, 33, 64), (1, 1, 1, 1), (2, 3, 33, 64)),  # scalar on the left
    ((1, 1, 197, 768), (1, 1, 197, 768), (1, 1, 1, 768)),  # row (a bias)
    ((1, 1, 197, 768), (1, 1, 197, 768), (1, 1, 197, 1)),  # column
    ((1, 1, 37, 5), (1, 1, 37, 5), (1, 1, 37, 1)),  # column, odd rows
    MASK,  # DistilBERT attention mask
    ((3, 5, 7, 9), (3, 1, 7, 1), (1, 5, 1, 9)),  # both sides, odd dims
    ((4, 6, 8, 12), (4, 1, 8, 1), (1, 6, 1, 12)),  # both sides, vector path
    ((2, 3, 4, 8), (1, 3, 1, 8), (1, 3, 4, 1)),  # output wider than both in dim 0
]

CASES: list[tuple[str, dict[str, Any]]] = [
    *(
        ("unary", {"numel": n, "op": op, **UNARY_EXTRA.get(op, {})})
        for op in UNARY_OPS
        for n in FLAT
    ),
    ("unary", {"numel": 4099, "op": "clamp"}),  # default bounds: the identity
    ("unary", {"numel": 4099, "op": "clamp", "lo": 2.0, "hi": -1.0}),  # lo > hi
    *(("add", {"numel": n, "act": act}) for act in ACTS for n in FLAT),
    *(
        ("binary", _bshape(op, (1, 1, 1, n), (1, 1, 1, n), (1, 1, 1, n)))
        for op in BINARY_OPS
        for n in FLAT
    ),
    *(("binary", _bshape(op, *b)) for op in BINARY_OPS for b in BROADCASTS),
    *(
        ("binary", _bshape(op, (2, 3, 9, 40), (2, 3, 9, 40), (2, 1, 1, 40), act))
        for op in BINARY_OPS
        for act in ACTS
    ),
    *(("cast_i64", {"numel": n}) for n in FLAT),
    *(
        ("channel_affine", dict(n=n, c=c, inner=inner, act=act))
        for n, c, inner in [(2, 16, 64), (3, 5, 7), (4, 33, 1), (2, 64, 49)]
        for act in ACTS
    ),
]

ZOO: list[tuple[str, dict[str, Any]]] = [
    # MobileNetV2 block-1 expansion at batch 8: relu6 on 8 x 96 x 112 x 112.
    ("unary", {"numel": 8 * 96 * 112 * 112, "op": "relu6"}),
    # ViT-B/16 and DistilBERT FFN: gelu on [8 * 128, 3072], both forms.
    ("unary", {"numel": 8 * 128 * 3072, "op": "gelu"}),
    ("unary", {"numel": 8 * 128 * 3072, "op": "gelu_tanh"}),
    # ViT-B/16 attention: q / 8 on [8, 12, 197, 64].
    ("unary", {"numel": 8 * 12 * 197 * 64, "op": "affine", "scale": 0.125}),
    # DistilBERT attention scores + mask.
    ("binary", _bshape("add", *MASK)),
    # ViT-B/16 position embedding, [8, 197, 768] + [1, 197, 768].
    ("binary", _bshape("add", (1, 8, 197, 768), (1, 8, 197, 768), (1, 1, 197, 768))),
    # DistilBERT input ids [8, 128].
    ("cast_i64", {"numel": 8 * 128}),
    # DenseNet-121 BN + relu on [8, 256, 56, 56]; ResNet-50 layer4 BN [8, 2048, 7, 7].
    ("channel_affine", dict(n=8, c=256, inner=56 * 56, act="relu")),
    ("channel_affine", dict(n=8, c=2048, inner=49)),
    # MobileNetV3-style hardswish, silu (EfficientNet) on [8, 96, 56, 56].
    ("channel_affine", dict(n=8, c=96, inner=56 * 56, act="hardswish")),
    ("channel_affine", dict(n=8, c=96, inner=56 * 56, act="silu")),
]


# --- plain vs torch -----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES + ZOO, ids=case_id)
def test_plain_matches_torch(gpu: Gpu, case: tuple[str, dict[str, Any]]) -> None:
    call = call_of(*case, seed=1)
    assert_close(call, run_plain(gpu, call))


EXACT = [
    *(("unary", {"numel": 10241, "op": op}) for op in ("none", "relu", "relu6")),
    ("unary", {"numel": 10241, "op": "clamp", "lo": -0.3, "hi": 0.7}),
    ("unary", {"numel": 10241, "op": "affine", "scale": 0.1, "shift": 0.3}),
    ("unary", {"numel": 10241, "op": "affine", "scale": -3.7, "shift": 1e-3}),
    *(("binary", _bshape(op, *b)) for op in BINARY_OPS for b in BROADCASTS[5:8]),
    ("binary", _bshape("mul", *MASK, act="relu")),
    ("channel_affine", dict(n=2, c=16, inner=64)),
    ("channel_affine", dict(n=3, c=5, inner=7, act="relu")),
    ("cast_i64", {"numel": 4099}),
]


@pytest.mark.parametrize("case", EXACT, ids=case_id)
@pytest.mark.parametrize("values", ["randn", "special"])
def test_exact_ops_equal_torch(gpu: Gpu, case, values: str) -> None:
    """Ops whose rounding is documented give torch's values exactly."""
    name, params = case
    fill = {}
    if values == "special" and name != "cast_i64":
        fill = {k: _specials for k in ("x", "a", "b")}
    call = call_of(name, params, seed=2, fill=fill)
    assert_same_values(call, run_plain(gpu, call))


SPECIAL_CASES = [
    *(
        ("unary", {"numel": 4099, "op": op, **UNARY_EXTRA.get(op, {})})
        for op in UNARY_OPS
    ),
    *(("add", {"numel": 4099, "act": act}) for act in ACTS),
    *(
        ("binary", _bshape(op, (1, 3, 7, 200), (1, 3, 7, 200), (1, 3, 1, 200), act))
        for op in BINARY_OPS
        for act in ("none", "gelu", "silu", "sigmoid")
    ),
    *(("channel_affine", dict(n=2, c=7, inner=300, act=act)) for act in ACTS),
]


@pytest.mark.parametrize("case", SPECIAL_CASES, ids=case_id)
def test_special_values_follow_torch(gpu: Gpu, case) -> None:
    """NaN, +-inf, -0.0, denormals and huge |x| (exp over- and underflow in
    sigmoid / silu, x^3 overflow in gelu_tanh): NaN and inf where torch has them,
    and never NaN from a finite input where torch has none."""
    name, params = case
    fill = {k: _specials for k in ("x", "a", "b", "scale", "shift")}
    call = call_of(name, params, seed=3, fill=fill)
    got = run_plain(gpu, call)
    assert_close(call, got)
    y, want = got["y"], call.expected["y"]
    assert torch.equal(y.isinf() & (y > 0), want.isinf() & (want > 0)), call.where()
    assert torch.equal(y.isinf() & (y < 0), want.isinf() & (want < 0)), call.where()


@pytest.mark.parametrize("act", sorted(TRANSCENDENTAL))
def test_saturating_acts_stay_finite_for_huge_inputs(gpu: Gpu, act: str) -> None:
    """exp over- and underflow and x^3 overflow give the limits, never NaN."""
    x = torch.tensor([-3.4e38, -1e30, -1e4, -100.0, -89.0, 89.0, 1e4, 3.4e38])
    call = call_of(
        "unary",
        {"numel": x.numel(), "op": act},
        fill={"x": lambda shape, gen: x.to(DEVICE)},
    )
    y = run_plain(gpu, call)["y"].cpu()
    assert not y.isnan().any(), f"{call.where()}: NaN from a finite input: {y}"
    # sigmoid and tanh reach their bounds; gelu, gelu_tanh and silu are -0 far
    # left and x itself far right.
    low, high = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(act, (0.0, x[-1]))
    assert (y[0].item(), y[-1].item()) == (low, float(high)), f"{call.where()}: {y}"


MISALIGNED = [
    ("unary", {"numel": 4099, "op": "gelu"}),
    ("unary", {"numel": 4099, "op": "affine", "scale": 0.5, "shift": 2.0}),
    ("add", {"numel": 4099, "act": "hardswish"}),
    *(("binary", _bshape("sub", *b, act="relu6")) for b in BROADCASTS),
    ("cast_i64", {"numel": 4099}),
    ("channel_affine", dict(n=2, c=16, inner=64, act="tanh")),
    ("channel_affine", dict(n=2, c=9, inner=33)),
]


@pytest.mark.parametrize("case", MISALIGNED, ids=case_id)
def test_misaligned_buffers_take_the_scalar_path(gpu: Gpu, case) -> None:
    call = call_of(*case, misalign=True, seed=4)
    assert_close(call, run_plain(gpu, call))


INPLACE = [
    ("unary", {"numel": 10241, "op": "silu"}, ("x", "y")),
    ("unary", {"numel": 10241, "op": "clamp", "lo": -1.0, "hi": 1.0}, ("x", "y")),
    ("add", {"numel": 10241, "act": "gelu"}, ("b", "y")),
    ("binary", _bshape("add", *MASK), ("a", "y")),
    ("binary", _bshape("div", (1, 2, 9, 31), (1, 1, 9, 1), (1, 2, 9, 31)), ("b", "y")),
    ("binary", _bshape("mul", (3, 5, 7, 9), (3, 5, 7, 9), (1, 5, 1, 9)), ("a", "y")),
    ("channel_affine", dict(n=2, c=16, inner=64, act="relu6"), ("x", "y")),
    ("channel_affine", dict(n=3, c=5, inner=7, act="sigmoid"), ("x", "y")),
]


@pytest.mark.parametrize(
    "name,params,alias", INPLACE, ids=[case_id(c[:2]) for c in INPLACE]
)
def test_inplace(gpu: Gpu, name, params, alias) -> None:
    call = call_of(name, params, alias=alias, seed=5)
    assert_close(call, run_plain(gpu, call))


@pytest.mark.parametrize("act", ACTS)
def test_linear_and_conv2d_epilogue_takes_every_act(gpu: Gpu, act: str) -> None:
    """The GEMM epilogues call reef_act; harness precision (rtol = atol = 1e-4)."""
    for name, params in [
        ("linear", dict(m=197, n=768, k=768, act=act)),
        ("linear", dict(m=3, n=17, k=1027, act=act)),
        ("conv2d", dict(n=2, c_in=16, h=14, w=14, c_out=32, kh=3, kw=3, act=act)),
        (
            "conv2d",
            dict(n=1, c_in=8, h=9, w=9, c_out=8, kh=3, kw=3, groups=8, act=act),
        ),
    ]:
        call = make_call(name, params, seed=6, scale=SCALE)
        assert_matches_reference(call, run_plain(gpu, call))


# --- preemptible ---------------------------------------------------------------------

FORM_CASES = [
    ("unary", {"numel": (1 << 20) + 5, "op": "gelu"}),
    ("unary", {"numel": 12345, "op": "affine", "scale": 0.125}),
    ("add", {"numel": (1 << 20) + 7, "act": "silu"}),
    ("binary", _bshape("add", *MASK)),
    ("binary", _bshape("div", (3, 5, 7, 9), (3, 1, 7, 1), (1, 5, 1, 9), "silu")),
    ("cast_i64", {"numel": 12345}),
    ("channel_affine", dict(n=8, c=64, inner=28 * 28, act="relu6")),
    ("channel_affine", dict(n=4, c=30, inner=49, act="hardswish")),
]


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preemptible_without_preemption_equals_plain(gpu: Gpu, case) -> None:
    check_preemptible_equals_plain(gpu, call_of(*case, seed=7), assert_close)


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preempted_then_resumed_from_any_block_equals_plain(gpu: Gpu, case) -> None:
    """The flag raised before the launch: nothing is claimed or written; blocks
    [0, k) done by a plain launch: the preemptible form resumes exactly at k."""
    call = call_of(*case, seed=8)
    plain = run_plain(gpu, call)
    check_raised_flag_runs_nothing(gpu, call, plain, resume=False)
    check_resume_from_counter(gpu, call, plain, k=call.n_vb // 3)


@pytest.mark.parametrize(
    "case",
    [
        ("unary", {"numel": 1 << 26, "op": "gelu"}),
        (
            "binary",
            _bshape("add", (64, 12, 128, 128), (64, 12, 128, 128), (64, 1, 1, 128)),
        ),
        ("channel_affine", dict(n=64, c=256, inner=56 * 56, act="silu")),
    ],
    ids=case_id,
)
def test_flag_raised_mid_run_stops_and_resumes_exactly(gpu: Gpu, case) -> None:
    """One persistent CTA walks the blocks (tens of ms); the host raises a
    mapped-memory flag mid-run; the same counter finishes with the plain result."""
    check_flag_mid_run(gpu, call_of(*case, seed=9))


# --- padded --------------------------------------------------------------------------

VIT_LINEAR = ("linear", dict(m=197, n=768, k=768, act="gelu"))
PADDED_PAIRS = [
    *((VIT_LINEAR, be) for be in FORM_CASES),
    (
        (
            "conv2d",
            dict(
                n=2,
                c_in=32,
                h=28,
                w=28,
                c_out=64,
                kh=3,
                kw=3,
                padding=(1, 1),
                act="relu6",
            ),
        ),
        ("binary", _bshape("add", *MASK, act="gelu_tanh")),
    ),
    (("add", {"numel": 1 << 20, "act": "relu"}), FORM_CASES[-1]),
    (FORM_CASES[-2], FORM_CASES[0]),  # an elementwise kernel on the RT side
]


def _pair_id(pair) -> str:
    return f"rt_{case_id(pair[0])}-be_{case_id(pair[1])}"


@pytest.mark.parametrize("pair", PADDED_PAIRS, ids=_pair_id)
def test_padded_launch_is_bitwise_the_plain_results(gpu: Gpu, pair) -> None:
    """Only the BE side is checked against torch (assert_close); the RT side is
    checked bit for bit against its own plain launch."""
    rt, be = call_of(*pair[0], seed=10), call_of(*pair[1], seed=11)
    check_padded_pair(gpu, rt, be, check_rt=None, check_be=assert_close, raised=False)
