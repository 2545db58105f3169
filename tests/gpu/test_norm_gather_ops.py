"""layer_norm, mean, embedding, strided_copy and masked softmax on a real GPU.

Each body against its torch reference computed on the same GPU, on random, edge
and model-zoo shapes (the ops modules' SAMPLE_PARAMS); copies and gathers must
be exact. Then the preemptible and padded forms against the plain form, bit for
bit. Precision: float32 throughout, TF32 off (the `gpu` fixture), rtol = atol =
1e-5 (tighter than the harness's 1e-4: these kernels are one or two roundings
per element plus float32 sums of at most a few thousand terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from reefd.kernels import ops_gather, ops_norm, ops_reduce
from reefd.kernels.ops_gather import copy_params
from tests.gpu.harness import (
    DEVICE,
    Call,
    Gpu,
    case_id,
    check_padded_pair,
    check_preemptible_equals_plain,
    check_raised_flag_runs_nothing,
    check_resume_from_counter,
    make_call,
    run_plain,
    sync,
)

pytestmark = pytest.mark.gpu

TOL = 1e-5
PRECISION = (
    "float32 kernel vs torch's float32 reference on the same GPU, TF32 off "
    f"(torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False), "
    f"rtol = atol = {TOL}"
)
EXACT = ("embedding", "strided_copy")
"""Kernels that only move values: their results must equal torch's bit for bit."""
NAN = float("nan")

Case = tuple[str, dict[str, Any]]


# --- building calls -------------------------------------------------------------


def _ids(vocab: int) -> Callable[[torch.Size, torch.Generator], torch.Tensor]:
    def fill(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(0, vocab, shape, generator=gen, device=DEVICE)

    return fill


def expect(call: Call) -> Call:
    """Recompute the expected outputs from the call's current inputs, starting
    from NaN (what `clear_outputs` writes), so elements a kernel leaves alone
    (strided_copy's gaps) are expected to stay NaN."""
    outs = {k: torch.full_like(call.tensors[k], NAN) for k in call.outputs}
    inputs = {k: t for k, t in call.tensors.items() if k not in call.outputs}
    call.spec.reference({**inputs, **outs}, call.params)
    sync()
    call.expected = outs
    return call


def build(name: str, params: dict[str, Any], **kw: Any) -> Call:
    """make_call with valid embedding ids and NaN-based expected outputs."""
    if name == "embedding":
        kw.setdefault("fill", {"ids": _ids(params["vocab"])})
    return expect(make_call(name, params, **kw))


def assert_close(call: Call, got: dict[str, torch.Tensor], equal_nan=False) -> None:
    """Within TOL of the reference; exactly equal for the data-movement kernels."""
    for name in call.outputs:
        want = call.expected[name]
        if call.spec.name in EXACT:
            same = torch.equal(got[name].view(torch.int32), want.view(torch.int32))
            assert same, f"{call.where()}: output {name!r} is not torch's, bit for bit"
            continue
        diff = (got[name] - want).abs().nan_to_num(float("inf")).max().item()
        ok = torch.allclose(got[name], want, rtol=TOL, atol=TOL, equal_nan=equal_nan)
        assert ok, (
            f"{call.where()}: output {name!r} differs from torch by up to {diff:.3g} "
            f"({PRECISION})"
        )


def _view_copy(
    x_shape: tuple[int, ...],
    view: Callable[[torch.Tensor], torch.Tensor],
    y_offset: int = 0,
) -> dict[str, Any]:
    """strided_copy params copying `view(x)` of a contiguous x into a contiguous
    y that starts `y_offset` elements into its buffer."""
    v = view(torch.empty(x_shape))
    return copy_params(v.shape, v.stride(), None, v.storage_offset(), y_offset)


# --- shapes -----------------------------------------------------------------------

LAYER_NORM = [
    dict(rows=1, cols=1),
    dict(rows=3, cols=1),
    dict(rows=1, cols=768),
    dict(rows=17, cols=33),
    dict(rows=9, cols=1000),
    dict(rows=4, cols=1024),
    dict(rows=3, cols=1025),
    dict(rows=2, cols=4096),
    dict(rows=2, cols=5001),
    dict(rows=8 * 128, cols=768, eps=1e-12),  # DistilBERT (eps 1e-12)
    dict(rows=8 * 197, cols=768, eps=1e-6),  # ViT-B/16 (timm: eps 1e-6)
]

MEAN = [
    dict(outer=1, red=1, inner=1),
    dict(outer=5, red=1, inner=1),
    dict(outer=1, red=7, inner=1),
    dict(outer=33, red=64, inner=1),
    dict(outer=9, red=65, inner=1),
    dict(outer=3, red=2048, inner=1),
    dict(outer=3, red=2049, inner=1),
    dict(outer=2, red=100000, inner=1),
    dict(outer=3, red=1, inner=5),
    dict(outer=2, red=31, inner=700),
    dict(outer=2, red=32, inner=700),
    dict(outer=1, red=1000, inner=3),
]

EMBEDDING = [
    dict(n=1, vocab=1, dim=1),
    dict(n=3, vocab=7, dim=1),
    dict(n=5, vocab=10, dim=4),
    dict(n=9, vocab=10, dim=132),
    dict(n=1000, vocab=50, dim=768),
]

STRIDED_COPY = [
    copy_params((1,), (0,)),
    copy_params((3, 5, 7), (35, 7, 1)),
    copy_params((1025,), (1,)),
    # A 6-D permute.
    _view_copy((2, 3, 4, 5, 6, 7), lambda t: t.permute(5, 3, 1, 4, 2, 0)),
    # Slices with steps and an offset into x, written at an offset into y.
    _view_copy((9, 40, 33), lambda t: t[2:8:3, 5:37:2, 1::4], y_offset=5),
    # Select, transpose, broadcast (several 0 strides), a reversed-order write.
    _view_copy((4, 9, 6), lambda t: t[:, 3]),
    _view_copy((37, 53), lambda t: t.t()),
    _view_copy((1, 1, 5), lambda t: t.expand(3, 4, 5)),
    copy_params((13, 11), (11, 1), (1, 13), 0, 3),  # innermost y stride 13
    copy_params((300, 7), (0, 1), (9, 1), 2, 1),  # y rows with gaps
]

MASKED_SOFTMAX = [
    dict(rows=6, cols=33, scale=0.5, mask_group=3),
    dict(rows=17, cols=1, mask_group=17),
    dict(rows=24, cols=1000, scale=0.125, mask_group=12),
    dict(rows=4, cols=1500, scale=2.0, mask_group=2),
    dict(rows=3, cols=4096, scale=0.1, mask_group=1),
    dict(rows=3, cols=5000, scale=0.125, mask_group=3),
    dict(rows=5, cols=100, scale=3.0),
]


def _samples(module: Any, kernel: str) -> list[dict[str, Any]]:
    """The ops module's zoo samples that fit `kernel`."""
    keys = {
        "layer_norm": {"rows"},
        "mean": {"outer"},
        "embedding": {"vocab"},
        "strided_copy": {"shape"},
    }[kernel]
    return [s for s in module.SAMPLE_PARAMS if keys <= set(s)]


ZOO_SOFTMAX = dict(rows=8 * 12 * 128, cols=128, scale=0.125, mask_group=12 * 128)

CASES: list[Case] = [
    *(("layer_norm", p) for p in LAYER_NORM + _samples(ops_norm, "layer_norm")),
    *(("mean", p) for p in MEAN + _samples(ops_reduce, "mean")),
    *(("embedding", p) for p in EMBEDDING + _samples(ops_gather, "embedding")),
    *(("strided_copy", p) for p in STRIDED_COPY + _samples(ops_gather, "strided_copy")),
    *(("softmax", p) for p in [*MASKED_SOFTMAX, ZOO_SOFTMAX]),
]


# --- plain vs torch -----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_plain_matches_torch(gpu: Gpu, case: Case) -> None:
    """Optional operands (layer_norm's weight and bias, softmax's mask) bound."""
    call = build(*case, seed=11)
    assert_close(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "case", [c for c in CASES if c[0] in ("layer_norm", "softmax")], ids=case_id
)
def test_plain_without_optional_operands(gpu: Gpu, case: Case) -> None:
    """No weight or bias (layer_norm), no mask (softmax): null pointers."""
    call = build(*case, seed=11, bias=False)
    assert not set(call.tensors) & {"weight", "bias", "mask"}
    assert_close(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "case",
    [
        ("layer_norm", dict(rows=9, cols=301)),
        ("layer_norm", dict(rows=3, cols=2000)),
        ("mean", dict(outer=7, red=77, inner=1)),
        ("mean", dict(outer=3, red=40, inner=33)),
        ("embedding", dict(n=9, vocab=20, dim=64)),  # dim % 4 == 0, unaligned
        ("strided_copy", _view_copy((5, 6, 7), lambda t: t.permute(2, 0, 1))),
        ("softmax", dict(rows=8, cols=200, scale=0.125, mask_group=4)),
        ("softmax", dict(rows=2, cols=3000, scale=0.125, mask_group=2)),
    ],
    ids=case_id,
)
def test_misaligned_buffers(gpu: Gpu, case: Case) -> None:
    """Buffers one element past 16-byte alignment take the scalar paths."""
    call = build(*case, seed=12, misalign=True)
    assert_close(call, run_plain(gpu, call))


@pytest.mark.parametrize(
    "case",
    [
        ("layer_norm", dict(rows=9, cols=768)),
        ("layer_norm", dict(rows=3, cols=3000)),
        ("softmax", dict(rows=12, cols=197, scale=0.125, mask_group=6)),
        ("softmax", dict(rows=4, cols=3000, scale=0.125, mask_group=2)),
        ("softmax", dict(rows=2, cols=9000, scale=0.125, mask_group=1)),
    ],
    ids=case_id,
)
def test_in_place(gpu: Gpu, case: Case) -> None:
    call = build(*case, seed=13, alias=("x", "y"))
    assert_close(call, run_plain(gpu, call))


@pytest.mark.parametrize("cols", [7, 768, 3000])
def test_layer_norm_special_rows(gpu: Gpu, cols: int) -> None:
    """A constant row (var 0: y = bias), a row with mean 10, a row with NaN and
    one with inf (NaN rows, as in torch)."""
    call = make_call("layer_norm", dict(rows=4, cols=cols), seed=14)
    x = call.tensors["x"]
    x[0] = 3.0
    x[1] += 10.0
    x[2, cols // 2] = NAN
    x[3, 0] = float("inf")
    expect(call)
    got = run_plain(gpu, call)
    assert_close(call, got, equal_nan=True)
    assert got["y"][2:].isnan().all()


def _padding_mask(call: Call, fill: float, masked: list[int]) -> None:
    """Key padding: in mask row b the last masked[b] columns get `fill`."""
    mask = call.tensors["mask"]
    mask.zero_()
    cols = mask.shape[1]
    for b in range(mask.shape[0]):
        if k := masked[b % len(masked)]:
            mask[b, cols - k :] = fill


@pytest.mark.parametrize("fill", [float("-inf"), -1e9], ids=["-inf", "-1e9"])
@pytest.mark.parametrize(
    "params",
    [
        ZOO_SOFTMAX,
        dict(rows=8, cols=2000, scale=0.125, mask_group=2),
        dict(rows=4, cols=9000, scale=0.125, mask_group=1),
    ],
    ids=lambda p: f"cols{p['cols']}",
)
def test_key_padding_mask_including_a_fully_masked_row(gpu, fill, params) -> None:
    """Masked columns get 0; a fully masked row (mask row 3) gives what torch
    gives: NaN for -inf, a uniform row for -1e9."""
    call = make_call("softmax", params, seed=15)
    cols = params["cols"]
    _padding_mask(call, fill, [0, 3, cols // 2, cols])
    expect(call)
    got = run_plain(gpu, call)["y"]
    assert_close(call, {"y": got}, equal_nan=True)
    fully = got[3 * params["mask_group"]]
    if fill == float("-inf"):
        assert fully.isnan().all()
    else:
        assert torch.allclose(fully, torch.full_like(fully, 1 / cols))
    assert (got[params["mask_group"], cols - 3 :] == 0).all()


def test_out_of_range_ids_give_nan_rows(gpu: Gpu) -> None:
    params = dict(n=40, vocab=100, dim=36)
    call = build("embedding", params, seed=16)
    ids = call.tensors["ids"]
    bad = {3: -1, 7: 100, 8: 2**40, 39: -(2**62)}
    for at, value in bad.items():
        ids[at] = value
    got = run_plain(gpu, call)["y"]
    for row in range(params["n"]):
        if row in bad:
            assert got[row].isnan().all(), f"id {bad[row]} at {row}: row not NaN"
        else:
            want = call.tensors["table"][ids[row]]
            assert torch.equal(got[row], want), f"row {row} of {call.where()}"


# --- preemptible ---------------------------------------------------------------------

_K_TRANSPOSE = _samples(ops_gather, "strided_copy")[1]
FORM_CASES: list[Case] = [
    ("layer_norm", dict(rows=8 * 197, cols=768)),
    ("layer_norm", dict(rows=64, cols=3000)),
    ("mean", dict(outer=8 * 2048, red=49, inner=1)),
    ("mean", dict(outer=512, red=3136, inner=1)),
    ("mean", dict(outer=8, red=128, inner=768)),
    ("mean", dict(outer=5, red=3, inner=50177)),
    ("embedding", dict(n=8 * 128, vocab=30522, dim=768)),
    ("strided_copy", _K_TRANSPOSE),
    ("strided_copy", _samples(ops_gather, "strided_copy")[-1]),  # a cat piece
    ("softmax", ZOO_SOFTMAX),
    ("softmax", dict(rows=64, cols=3000, scale=0.125, mask_group=8)),
]


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preemptible_equals_plain_on_any_grid(gpu: Gpu, case: Case) -> None:
    check_preemptible_equals_plain(gpu, build(*case, seed=17), assert_close)


@pytest.mark.parametrize("case", FORM_CASES, ids=case_id)
def test_preempted_then_resumed_equals_plain(gpu: Gpu, case: Case) -> None:
    """A raised flag runs nothing; a launch from a partial counter (blocks [0, k)
    done by the plain form) finishes exactly the plain result."""
    call = build(*case, seed=18)
    plain = run_plain(gpu, call)
    check_raised_flag_runs_nothing(gpu, call, plain, resume=False)
    check_resume_from_counter(gpu, call, plain, k=call.n_vb // 3)


# --- padded --------------------------------------------------------------------------

_LINEAR = ("linear", dict(m=197, n=768, k=768))
_CONV = (
    "conv2d",
    dict(n=2, c_in=64, h=28, w=28, c_out=64, kh=3, kw=3, padding=(1, 1), act="relu"),
)
PADDED_PAIRS: list[tuple[Case, Case]] = [
    *((_LINEAR, be) for be in FORM_CASES),
    (_CONV, ("layer_norm", dict(rows=64, cols=3000))),
    (_CONV, ("mean", dict(outer=8, red=128, inner=768))),
    (("layer_norm", dict(rows=8 * 128, cols=768)), ("strided_copy", _K_TRANSPOSE)),
]


def _pair_id(pair: tuple[Case, Case]) -> str:
    return f"rt_{case_id(pair[0])}-be_{case_id(pair[1])}"


@pytest.mark.parametrize("pair", PADDED_PAIRS, ids=_pair_id)
def test_padded_beside_an_rt_kernel_is_exact(gpu: Gpu, pair) -> None:
    """Bit for bit only (no torch checks), with a BE budget of every block and of
    a third of them (rounded up), each on SMs CTAs and then resumed."""
    rt, be = build(*pair[0], seed=19), build(*pair[1], seed=20)
    check_padded_pair(
        gpu,
        rt,
        be,
        check_rt=None,
        check_be=None,
        whole=False,
        budgets=(be.n_vb, max(1, math.ceil(be.n_vb / 3))),
        raised=False,
    )
