"""layer_norm, mean, embedding, strided_copy and the masked, scaled softmax.

Shape rules, GraphErrors naming the bad param, references against independent
torch computations, and virtual-block counts that cover every output. No GPU:
the CUDA bodies are compiled by `python -m reefd.kernels check` and run in
tests/gpu/test_norm_gather_ops.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from reefd.errors import GraphError, RequestError
from reefd.graph import Buffer, KernelCall, KernelGraph, Role, validate
from reefd.kernels import catalog, ops_gather, ops_norm, ops_reduce, ops_softmax
from reefd.memory import run_graph

NEW = ("layer_norm", "mean", "embedding", "strided_copy")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_spec(name: str, params: dict, inputs: dict[str, torch.Tensor]) -> dict:
    """Run a reference on views that start inside larger buffers (storage
    offset 3), as a backend may bind them; outputs start as NaN."""
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    shapes = spec.shapes(full)
    views = {}
    for op in spec.operands:
        if op.access == "read" and op.name not in inputs:
            continue
        numel = math.prod(shapes[op.name])
        dtype = inputs[op.name].dtype if op.name in inputs else torch.float32
        flat = torch.zeros(numel + 6, dtype=dtype)
        if dtype.is_floating_point:
            flat.fill_(float("nan"))
        view = flat[3 : 3 + numel].view(shapes[op.name])
        if op.name in inputs:
            view.copy_(inputs[op.name].reshape(shapes[op.name]))
        views[op.name] = view
    spec.reference(views, full)
    return views


def shapes_of(name: str, params: dict) -> dict:
    spec = catalog.get(name)
    return spec.shapes(spec.with_defaults(params))


def vbs(name: str, params: dict) -> int:
    spec = catalog.get(name)
    return spec.virtual_blocks(spec.with_defaults(params))


def test_new_kernels_are_registered_with_bodies_and_one_output():
    for name in NEW:
        spec = catalog.get(name)
        assert spec.summary and spec.source and spec.cta_threads == 256
        assert sum(op.access == "write" for op in spec.operands) == 1
    assert catalog.get("embedding").operand("ids").dtypes == ("int64",)
    assert catalog.get("layer_norm").inplace_ok
    assert not catalog.get("strided_copy").inplace_ok


# --- layer_norm -------------------------------------------------------------------


def _layer_norm_by_hand(x, w, b, eps):
    mean = x.sum(-1, keepdim=True) / x.shape[-1]
    var = ((x - mean) ** 2).sum(-1, keepdim=True) / x.shape[-1]
    y = (x - mean) / torch.sqrt(var + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 33), (3, 768), (2, 1500)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_the_formula(rows, cols, affine):
    g = _gen(0)
    x = torch.randn(rows, cols, generator=g) * 3 + 1
    w, b = torch.randn(cols, generator=g), torch.randn(cols, generator=g)
    inputs = {"x": x, **({"weight": w, "bias": b} if affine else {})}
    got = run_spec("layer_norm", {"rows": rows, "cols": cols, "eps": 1e-3}, inputs)
    want = _layer_norm_by_hand(x, w if affine else None, b if affine else None, 1e-3)
    torch.testing.assert_close(got["y"], want, rtol=1e-5, atol=1e-5)


def test_layer_norm_weight_only_and_in_place():
    g = _gen(1)
    x, w = torch.randn(4, 10, generator=g), torch.randn(10, generator=g)
    buf = x.clone()
    spec = catalog.get("layer_norm")
    params = spec.with_defaults({"rows": 4, "cols": 10})
    spec.reference({"x": buf, "weight": w, "y": buf}, params)
    torch.testing.assert_close(buf, _layer_norm_by_hand(x, w, None, 1e-5))
    assert params["eps"] == 1e-5


def test_layer_norm_shapes_variants_and_blocks():
    assert shapes_of("layer_norm", {"rows": 6, "cols": 768}) == {
        "x": (6, 768),
        "weight": (768,),
        "bias": (768,),
        "y": (6, 768),
    }
    spec = catalog.get("layer_norm")
    for cols, body in [
        (1, "layer_norm_warp_body<1>"),
        (33, "layer_norm_warp_body<2>"),
        (300, "layer_norm_warp_body<12>"),
        (768, "layer_norm_warp_body<24>"),
        (1024, "layer_norm_warp_body<32>"),
        (1025, "layer_norm_block_body"),
    ]:
        params = spec.with_defaults({"rows": 17, "cols": cols})
        assert spec.body(params) == body
        per_vb = ops_norm.WARP_ROWS_PER_VB if "warp" in body else 1
        assert spec.virtual_blocks(params) == math.ceil(17 / per_vb)
        assert spec.dynamic_smem_bytes(params) == (0 if "warp" in body else 32)


# --- mean -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outer,red,inner", [(1, 1, 1), (6, 49, 1), (3, 3000, 1), (2, 5, 7), (2, 40, 9)]
)
def test_mean_matches_sum_over_count(outer, red, inner):
    x = torch.randn(outer, red, inner, generator=_gen(2))
    got = run_spec("mean", dict(outer=outer, red=red, inner=inner), {"x": x})["y"]
    want = x.double().sum(dim=1) / red
    assert got.shape == (outer, inner)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "outer,red,inner,body,outputs_per_vb",
    [
        (100, 49, 1, "mean_rows_body<8>", 32),
        (100, 65, 1, "mean_rows_body<32>", 8),
        (100, 2048, 1, "mean_rows_body<32>", 8),
        (100, 2049, 1, "mean_rows_body<256>", 1),
        (3, 31, 700, "mean_cols_body<1>", 256),
        (3, 32, 700, "mean_cols_body<8>", 32),
    ],
)
def test_mean_variants_cover_every_output(outer, red, inner, body, outputs_per_vb):
    spec = catalog.get("mean")
    params = spec.with_defaults(dict(outer=outer, red=red, inner=inner))
    assert spec.body(params) == body
    n_vb = spec.virtual_blocks(params)
    outputs = outer * inner
    assert n_vb * outputs_per_vb >= outputs > (n_vb - 1) * outputs_per_vb
    assert spec.flops(params) == outer * red * inner


# --- embedding --------------------------------------------------------------------


def test_embedding_gathers_rows():
    table = torch.randn(11, 6, generator=_gen(3))
    ids = torch.tensor([3, 0, 10, 3, 7])
    got = run_spec(
        "embedding", dict(n=5, vocab=11, dim=6), {"ids": ids, "table": table}
    )
    assert torch.equal(got["y"], torch.stack([table[i] for i in ids.tolist()]))


@pytest.mark.parametrize("bad_id", [-1, 11, 2**40])
def test_embedding_reference_refuses_an_id_out_of_range(bad_id):
    ids = torch.tensor([1, bad_id, 2])
    with pytest.raises(RequestError) as info:
        run_spec(
            "embedding",
            dict(n=3, vocab=11, dim=4),
            {"ids": ids, "table": torch.ones(11, 4)},
        )
    assert f"id {bad_id} at position 1" in str(info.value)
    assert "vocab=11" in str(info.value)


def test_embedding_shapes_and_blocks():
    params = dict(n=1024, vocab=30522, dim=768)
    assert shapes_of("embedding", params) == {
        "ids": (1024,),
        "table": (30522, 768),
        "y": (1024, 768),
    }
    assert vbs("embedding", params) == 1024 // ops_gather.EMBEDDING_ROWS_PER_VB
    assert vbs("embedding", dict(n=9, vocab=2, dim=3)) == 2


# --- strided_copy -----------------------------------------------------------------


def _copy_params(view: torch.Tensor, out: torch.Tensor) -> dict[str, Any]:
    """strided_copy params copying `view` (a view of a contiguous base) into
    `out` (a view of another)."""
    return ops_gather.copy_params(
        view.shape,
        view.stride(),
        out.stride(),
        view.storage_offset(),
        out.storage_offset(),
    )


def _run_copy(x_base: torch.Tensor, view, y_numel: int, out_view) -> torch.Tensor:
    """Copy `view(x_base)` into `out_view(y)` with the kernel's reference; y flat."""
    y_probe = torch.zeros(y_numel)
    params = _copy_params(view(x_base), out_view(y_probe))
    shapes = shapes_of("strided_copy", params)
    assert shapes["x"][0] <= x_base.numel() and shapes["y"][0] <= y_numel
    x_flat = x_base.reshape(-1)[: shapes["x"][0]]
    got = run_spec("strided_copy", params, {"x": x_flat})["y"]
    y = torch.full((y_numel,), float("nan"))
    y[: shapes["y"][0]] = got
    return y


COPY_CASES = [
    # (x shape, view of x, y shape): y is the contiguous copy of the view.
    ((2, 5, 3, 4), lambda t: t.permute(0, 2, 1, 3), None),
    ((2, 5, 3, 4), lambda t: t.permute(0, 2, 3, 1), None),
    ((3, 4), lambda t: t.t(), None),
    ((4, 9, 6), lambda t: t[:, 0], None),
    ((4, 9, 6), lambda t: t[1:3, 2:8:2, ::5], None),
    ((1, 1, 6), lambda t: t.expand(4, 1, 6), None),
    ((2, 3, 2, 3, 2, 3), lambda t: t.permute(5, 3, 1, 4, 2, 0), None),
    ((7,), lambda t: t, None),
]


@pytest.mark.parametrize("shape,view,_", COPY_CASES)
def test_strided_copy_makes_views_contiguous(shape, view, _):
    x = torch.randn(shape, generator=_gen(4))
    want = view(x).contiguous().reshape(-1)
    y = _run_copy(x, view, want.numel(), lambda y: y.view(view(x).shape))
    assert torch.equal(y, want)


def test_strided_copy_writes_a_cat_piece_and_leaves_the_rest():
    a, b = (
        torch.randn(2, 3, 4, generator=_gen(5)),
        torch.randn(2, 5, 4, generator=_gen(6)),
    )
    want = torch.cat([a, b], dim=1)
    y = torch.full((2 * 8 * 4,), float("nan"))
    for piece, start in ((a, 0), (b, 3)):
        out = y.view(2, 8, 4)[:, start : start + piece.shape[1]]
        params = _copy_params(piece, out)
        shapes = shapes_of("strided_copy", params)
        spec = catalog.get("strided_copy")
        view = y[: shapes["y"][0]]
        spec.reference({"x": piece.reshape(-1), "y": view}, spec.with_defaults(params))
    assert torch.equal(y.view(2, 8, 4), want)


def test_strided_copy_extents_are_the_largest_offsets_reached():
    params = dict(
        shape=(1, 1, 1, 1, 8, 768),
        x_strides=(0, 0, 0, 0, 197 * 768, 1),
        x_offset=768,
        y_strides=(0, 0, 0, 0, 768, 1),
        y_offset=5,
    )
    assert shapes_of("strided_copy", params) == {
        "x": (768 + 7 * 197 * 768 + 767 + 1,),
        "y": (5 + 8 * 768,),
    }
    assert vbs("strided_copy", params) == 6
    assert vbs("strided_copy", {**params, "shape": (1, 1, 1, 1, 1, 1025)}) == 2


def test_strided_copy_one_element_and_size_one_dims_with_any_stride():
    params = dict(
        shape=(1,) * 6, x_strides=(5,) * 6, x_offset=2, y_strides=(0,) * 6, y_offset=0
    )
    assert shapes_of("strided_copy", params) == {"x": (3,), "y": (1,)}
    got = run_spec("strided_copy", params, {"x": torch.tensor([1.0, 2.0, 3.0])})
    assert got["y"].tolist() == [3.0]


BASE_COPY = dict(
    shape=(1, 1, 1, 1, 2, 3),
    x_strides=(0, 0, 0, 0, 3, 1),
    x_offset=0,
    y_strides=(0, 0, 0, 0, 3, 1),
    y_offset=0,
)
BASE_LN = dict(rows=2, cols=3)
BASE_SM = dict(rows=6, cols=4)

BAD_PARAMS = [
    ("layer_norm", {**BASE_LN, "rows": 0}, "rows=0"),
    ("layer_norm", {**BASE_LN, "cols": -2}, "cols=-2"),
    ("layer_norm", {**BASE_LN, "eps": "x"}, "'eps'='x' is not float"),
    ("mean", dict(outer=1, red=0, inner=1), "red=0"),
    ("mean", dict(outer=-1, red=2, inner=1), "outer=-1"),
    ("mean", dict(outer=1, red=2, inner=0), "inner=0"),
    ("embedding", dict(n=0, vocab=3, dim=2), "n=0"),
    ("embedding", dict(n=1, vocab=0, dim=2), "vocab=0"),
    ("embedding", dict(n=1, vocab=3, dim=-1), "dim=-1"),
    ("strided_copy", {**BASE_COPY, "shape": (1, 1, 1, 1, 0, 3)}, "shape=[1, 1, 1"),
    ("strided_copy", {**BASE_COPY, "shape": (2, 3)}, "shape=[2, 3] must be 6 ints"),
    ("strided_copy", {**BASE_COPY, "x_strides": (0, 0, 0, 0, 3, -1)}, "x_strides="),
    ("strided_copy", {**BASE_COPY, "y_strides": (0, 0, 0, -3, 3, 1)}, "y_strides="),
    ("strided_copy", {**BASE_COPY, "x_offset": -1}, "x_offset=-1"),
    ("strided_copy", {**BASE_COPY, "y_offset": -4}, "y_offset=-4"),
    (
        "strided_copy",
        {**BASE_COPY, "y_strides": (0, 0, 0, 0, 0, 1)},
        "y_strides=[0, 0, 0, 0, 0, 1] has stride 0 on an extent 2",
    ),
    (
        "strided_copy",
        {**BASE_COPY, "y_strides": (0, 0, 0, 0, 2, 1)},
        "y_strides=[0, 0, 0, 0, 2, 1] overlap",
    ),
    ("softmax", {**BASE_SM, "mask_group": 0}, "mask_group=0"),
    ("softmax", {**BASE_SM, "mask_group": 4}, "mask_group=4 does not divide rows=6"),
    ("softmax", {**BASE_SM, "scale": "big"}, "'scale'='big' is not float"),
]


@pytest.mark.parametrize("name,params,needle", BAD_PARAMS)
def test_bad_params_raise_graph_error_naming_the_param(name, params, needle):
    spec = catalog.get(name)
    with pytest.raises(GraphError) as info:
        spec.shapes(spec.with_defaults(params))
    assert needle in str(info.value)
    assert repr(name) in str(info.value)


def test_broadcast_x_strides_are_allowed():
    params = {**BASE_COPY, "x_strides": (0, 0, 0, 0, 0, 0)}
    assert shapes_of("strided_copy", params)["x"] == (1,)
    got = run_spec("strided_copy", params, {"x": torch.tensor([4.0])})["y"]
    assert got.tolist() == [4.0] * 6


# --- softmax: scale and mask ------------------------------------------------------


def _softmax_by_hand(x, mask, scale, group):
    rows = []
    for r in range(x.shape[0]):
        v = x[r] * scale
        if mask is not None:
            v = v + mask[r // group]
        rows.append(torch.exp(v - v.max()) / torch.exp(v - v.max()).sum())
    return torch.stack(rows)


@pytest.mark.parametrize("rows,cols,group", [(6, 5, 1), (6, 5, 3), (24, 7, 12)])
def test_masked_scaled_softmax_matches_row_by_row(rows, cols, group):
    g = _gen(7)
    x = torch.randn(rows, cols, generator=g) * 4
    mask = torch.randn(rows // group, cols, generator=g)
    mask[0, 1] = -1e9
    mask[-1, 0] = float("-inf")
    params = dict(rows=rows, cols=cols, scale=0.125, mask_group=group)
    got = run_spec("softmax", params, {"x": x, "mask": mask})["y"]
    torch.testing.assert_close(got, _softmax_by_hand(x, mask, 0.125, group))
    assert shapes_of("softmax", params)["mask"] == (rows // group, cols)


def test_softmax_rounds_the_product_then_the_sum():
    """Not an fma: x * scale is rounded to float32 before the mask is added."""
    x = torch.tensor([[1.0 + 2**-12, 0.0]])
    mask = torch.tensor([[-1.0, 0.0]])
    # x * scale = 1 + 2**-11 + 2**-24 rounds to 1 + 2**-11; an fma would keep
    # 2**-24 in x * scale + mask.
    spec = catalog.get("softmax")
    params = spec.with_defaults(dict(rows=1, cols=2, scale=1.0 + 2**-12))
    v = ops_softmax._softmax_input({"x": x, "mask": mask}, params)
    assert v[0, 0].item() == 2**-11


def test_softmax_without_mask_or_scale_is_plain_softmax_bit_for_bit():
    x = torch.randn(5, 9, generator=_gen(8)) * 10
    got = run_spec("softmax", dict(rows=5, cols=9), {"x": x})["y"]
    assert torch.equal(got, torch.softmax(x, dim=-1))
    got = run_spec("softmax", dict(rows=5, cols=9, scale=0.5), {"x": x})["y"]
    assert torch.equal(got, torch.softmax(x * 0.5, dim=-1))


def test_fully_masked_row_is_nan_like_torch():
    x = torch.randn(4, 3, generator=_gen(9))
    mask = torch.zeros(2, 3)
    mask[1] = float("-inf")
    got = run_spec(
        "softmax", dict(rows=4, cols=3, mask_group=2), {"x": x, "mask": mask}
    )
    want = torch.softmax(x.view(2, 2, 3) + mask.view(2, 1, 3), -1).view(4, 3)
    assert got["y"][2:].isnan().all() and want[2:].isnan().all()
    torch.testing.assert_close(got["y"], want, equal_nan=True)


def test_masked_softmax_in_place():
    g = _gen(10)
    x, mask = torch.randn(4, 6, generator=g), torch.randn(1, 6, generator=g)
    buf = x.clone()
    spec = catalog.get("softmax")
    params = spec.with_defaults(dict(rows=4, cols=6, scale=2.0, mask_group=4))
    spec.reference({"x": buf, "mask": mask, "y": buf}, params)
    torch.testing.assert_close(buf, _softmax_by_hand(x, mask, 2.0, 4))


# --- samples and a small graph ----------------------------------------------------


@pytest.mark.parametrize(
    "module", [ops_norm, ops_reduce, ops_gather, ops_softmax], ids=lambda m: m.__name__
)
def test_sample_params_are_valid_for_some_kernel(module):
    for sample in module.SAMPLE_PARAMS:
        fits = []
        for spec in catalog.all_specs():
            if spec.reference.__module__ != module.__name__:
                continue
            try:
                params = spec.with_defaults(sample)
                spec.shapes(params)
            except GraphError:
                continue
            fits.append(spec.name)
            assert spec.virtual_blocks(params) >= 1
        assert fits, sample


def test_embedding_norm_mean_graph_validates_and_matches_torch():
    n, vocab, dim = 6, 20, 8
    f32 = "float32"
    buffers = (
        Buffer("ids", "int64", (2, 3), Role.INPUT),
        Buffer("table", f32, (vocab, dim), Role.WEIGHT),
        Buffer("ln_w", f32, (dim,), Role.WEIGHT),
        Buffer("ln_b", f32, (dim,), Role.WEIGHT),
        Buffer("h", f32, (2, 3, dim), Role.SCRATCH),
        Buffer("ht", f32, (2, dim, 3), Role.SCRATCH),
        Buffer("pooled", f32, (2, dim), Role.OUTPUT),
    )
    calls = (
        KernelCall(
            "embedding",
            {"ids": "ids", "table": "table", "y": "h"},
            dict(n=n, vocab=vocab, dim=dim),
        ),
        KernelCall(
            "layer_norm",
            {"x": "h", "weight": "ln_w", "bias": "ln_b", "y": "h"},
            dict(rows=n, cols=dim),
        ),
        KernelCall(
            "strided_copy",
            {"x": "h", "y": "ht"},
            dict(
                shape=(1, 1, 1, 2, dim, 3),
                x_strides=(0, 0, 0, 3 * dim, 1, dim),
                y_strides=(0, 0, 0, 3 * dim, 3, 1),
            ),
        ),
        KernelCall(
            "mean", {"x": "ht", "y": "pooled"}, dict(outer=2 * dim, red=3, inner=1)
        ),
    )
    graph = KernelGraph("pool", buffers, calls)
    validate(graph)
    g = _gen(11)
    ids = torch.randint(0, vocab, (2, 3), generator=g)
    weights = {
        "table": torch.randn(vocab, dim, generator=g),
        "ln_w": torch.randn(dim, generator=g),
        "ln_b": torch.randn(dim, generator=g),
    }
    got = run_graph(graph, weights, {"ids": ids})["pooled"]
    h = torch.nn.functional.layer_norm(
        weights["table"][ids], (dim,), weights["ln_w"], weights["ln_b"]
    )
    torch.testing.assert_close(got, h.transpose(1, 2).mean(-1), rtol=1e-5, atol=1e-6)
