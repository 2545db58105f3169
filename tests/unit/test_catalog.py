"""The kernel catalog: references against torch, shape rules, extents, and a
small graph run end to end through validation and the reference runner."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reefd.errors import GraphError
from reefd.graph import Buffer, KernelCall, KernelGraph, Role, validate
from reefd.kernels import catalog
from reefd.memory import run_graph

EXPECTED = {
    "adaptive_avg_pool2d",
    "add",
    "avg_pool2d",
    "conv2d",
    "copy",
    "linear",
    "max_pool2d",
    "relu",
    "softmax",
}


def run_spec(name: str, params: dict, inputs: dict[str, torch.Tensor]) -> dict:
    """Run a kernel's reference the way memory.run_call does: views of flat buffers."""
    spec = catalog.get(name)
    full = spec.with_defaults(params)
    shapes = spec.shapes(full)
    views = {}
    for op in spec.operands:
        if op.access == "read" and op.name not in inputs:
            continue
        flat = torch.full((math.prod(shapes[op.name]) + 3,), float("nan"))
        view = flat[: math.prod(shapes[op.name])].view(shapes[op.name])
        if op.access == "read":
            view.copy_(inputs[op.name])
        views[op.name] = view
    spec.reference(views, full)
    return views


def test_catalog_holds_every_kernel_with_float32_operands():
    assert set(catalog.names()) >= EXPECTED
    for name in EXPECTED:
        spec = catalog.get(name)
        assert spec.summary
        assert all(op.dtypes == ("float32",) for op in spec.operands)
        assert sum(op.access == "write" for op in spec.operands) == 1


CONV_CASES = [
    dict(n=2, c_in=3, h=9, w=7, c_out=4, kh=3, kw=3),
    dict(n=1, c_in=4, h=10, w=11, c_out=6, kh=3, kw=2, stride=(2, 1), padding=(1, 2)),
    dict(n=2, c_in=6, h=12, w=12, c_out=4, kh=3, kw=3, dilation=(2, 3), groups=2),
    dict(n=1, c_in=8, h=7, w=9, c_out=8, kh=3, kw=3, padding=(1, 1), groups=8),
    dict(n=1, c_in=2, h=5, w=5, c_out=3, kh=1, kw=1, stride=(3, 2), act="relu"),
]


@pytest.mark.parametrize("params", CONV_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_matches_torch(params, with_bias):
    gen = torch.Generator().manual_seed(0)
    groups = params.get("groups", 1)
    x = torch.randn(
        params["n"], params["c_in"], params["h"], params["w"], generator=gen
    )
    w = torch.randn(
        params["c_out"],
        params["c_in"] // groups,
        params["kh"],
        params["kw"],
        generator=gen,
    )
    b = torch.randn(params["c_out"], generator=gen)
    inputs = {"x": x, "w": w, **({"bias": b} if with_bias else {})}
    got = run_spec("conv2d", params, inputs)["y"]
    want = F.conv2d(
        x,
        w,
        b if with_bias else None,
        stride=params.get("stride", 1),
        padding=params.get("padding", 0),
        dilation=params.get("dilation", 1),
        groups=groups,
    )
    if params.get("act") == "relu":
        want = torch.relu(want)
        assert (got == 0).any()
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["none", "relu"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(act, with_bias):
    gen = torch.Generator().manual_seed(1)
    x, w, b = (
        torch.randn(5, 7, generator=gen),
        torch.randn(3, 7, generator=gen),
        torch.randn(3, generator=gen),
    )
    inputs = {"x": x, "w": w, **({"bias": b} if with_bias else {})}
    got = run_spec("linear", dict(m=5, n=3, k=7, act=act), inputs)["y"]
    want = F.linear(x, w, b if with_bias else None)
    if act == "relu":
        want = torch.relu(want)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_elementwise_match_torch():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(37, generator=gen), torch.randn(37, generator=gen)
    p = {"numel": 37}
    assert torch.equal(run_spec("relu", p, {"x": a})["y"], torch.relu(a))
    assert torch.equal(run_spec("copy", p, {"x": a})["y"], a)
    assert torch.equal(run_spec("add", p, {"a": a, "b": b})["y"], a + b)
    got = run_spec("add", {**p, "act": "relu"}, {"a": a, "b": b})["y"]
    assert torch.equal(got, torch.relu(a + b))


@pytest.mark.parametrize("name", ["relu", "add", "softmax"])
def test_inplace_kernels_work_when_output_aliases_input(name):
    spec = catalog.get(name)
    assert spec.inplace_ok
    gen = torch.Generator().manual_seed(3)
    buf = torch.randn(24, generator=gen)
    other = torch.randn(24, generator=gen)
    before = buf.clone()
    if name == "softmax":
        params = {"rows": 4, "cols": 6}
        views = {"x": buf.view(4, 6), "y": buf.view(4, 6)}
        want = torch.softmax(before.view(4, 6), dim=-1).reshape(-1)
    elif name == "add":
        params = {"numel": 24}
        views = {"a": buf, "b": other, "y": buf}
        want = before + other
    else:
        params = {"numel": 24}
        views = {"x": buf, "y": buf}
        want = torch.relu(before)
    spec.reference(views, spec.with_defaults(params))
    torch.testing.assert_close(buf, want)


def test_copy_does_not_allow_inplace():
    assert not catalog.get("copy").inplace_ok
    assert not catalog.get("conv2d").inplace_ok


POOL_CASES = [
    dict(kernel=(2, 2), stride=(2, 2)),
    dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
    dict(kernel=(3, 2), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel=(2, 2), stride=(3, 3), ceil_mode=True),
    dict(kernel=(3, 3), stride=(1, 2), padding=(1, 0)),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("dilation", [(1, 1), (2, 1)])
def test_max_pool2d_matches_torch(case, dilation):
    x = torch.randn(2, 3, 10, 9, generator=torch.Generator().manual_seed(4))
    params = dict(n=2, c=3, h=10, w=9, dilation=dilation, **case)
    got = run_spec("max_pool2d", params, {"x": x})["y"]
    want = F.max_pool2d(
        x,
        case["kernel"],
        case["stride"],
        case.get("padding", 0),
        dilation,
        ceil_mode=case.get("ceil_mode", False),
    )
    assert got.shape == want.shape
    assert torch.equal(got, want)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize(
    "extra",
    [{}, {"count_include_pad": False}, {"divisor_override": 3}],
)
def test_avg_pool2d_matches_torch(case, extra):
    x = torch.randn(2, 3, 11, 8, generator=torch.Generator().manual_seed(5))
    params = dict(n=2, c=3, h=11, w=8, **case, **extra)
    got = run_spec("avg_pool2d", params, {"x": x})["y"]
    want = F.avg_pool2d(
        x,
        case["kernel"],
        case["stride"],
        case.get("padding", 0),
        ceil_mode=case.get("ceil_mode", False),
        count_include_pad=extra.get("count_include_pad", True),
        divisor_override=extra.get("divisor_override"),
    )
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_ceil_mode_drops_a_window_starting_in_right_padding():
    # torch: 5 wide, kernel 2, stride 2, pad 1, ceil -> 3 (not 4).
    spec = catalog.get("max_pool2d")
    params = spec.with_defaults(
        dict(
            n=1,
            c=1,
            h=5,
            w=5,
            kernel=(2, 2),
            stride=(2, 2),
            padding=(1, 1),
            ceil_mode=True,
        )
    )
    assert spec.shapes(params)["y"] == (1, 1, 3, 3)
    assert F.max_pool2d(torch.zeros(1, 1, 5, 5), 2, 2, 1, ceil_mode=True).shape[-1] == 3


@pytest.mark.parametrize(
    "hw,out", [((8, 8), (2, 2)), ((7, 10), (3, 4)), ((3, 5), (6, 5))]
)
def test_adaptive_avg_pool2d_matches_torch(hw, out):
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(6))
    params = dict(n=2, c=3, h=hw[0], w=hw[1], out_h=out[0], out_w=out[1])
    got = run_spec("adaptive_avg_pool2d", params, {"x": x})["y"]
    torch.testing.assert_close(got, F.adaptive_avg_pool2d(x, out), rtol=1e-6, atol=1e-6)


def test_adaptive_flops_count_overlapping_windows_exactly():
    spec = catalog.get("adaptive_avg_pool2d")
    # 7 -> 3: windows [0,3) [2,5) [4,7) -> 9 rows; 10 -> 4: [0,3)[2,5)[5,8)[7,10) -> 12
    params = dict(n=2, c=3, h=7, w=10, out_h=3, out_w=4)
    assert spec.flops(params) == 2 * 3 * 9 * 12


def test_softmax_matches_torch():
    x = torch.randn(6, 33, generator=torch.Generator().manual_seed(7)) * 10
    got = run_spec("softmax", {"rows": 6, "cols": 33}, {"x": x})["y"]
    torch.testing.assert_close(got, torch.softmax(x, dim=-1))
    torch.testing.assert_close(got.sum(-1), torch.ones(6))


BASE_CONV = dict(n=1, c_in=4, h=8, w=8, c_out=6, kh=3, kw=3)
BASE_POOL = dict(n=1, c=2, h=6, w=6, kernel=(2, 2), stride=(2, 2))

BAD_PARAMS = [
    ("conv2d", {**BASE_CONV, "h": -1}, "h=-1"),
    ("conv2d", {**BASE_CONV, "c_out": 0}, "c_out=0"),
    ("conv2d", {**BASE_CONV, "groups": 4}, "groups=4"),
    ("conv2d", {**BASE_CONV, "groups": 0}, "groups=0"),
    ("conv2d", {**BASE_CONV, "kh": 9}, "output size 0x6"),
    ("conv2d", {**BASE_CONV, "dilation": (4, 1)}, "output size 0x6"),
    ("conv2d", {**BASE_CONV, "stride": (1,)}, "stride=[1]"),
    ("conv2d", {**BASE_CONV, "stride": (0, 1)}, "stride=[0, 1]"),
    ("conv2d", {**BASE_CONV, "padding": (1, 1, 1)}, "padding=[1, 1, 1]"),
    ("conv2d", {**BASE_CONV, "padding": (-1, 0)}, "padding=[-1, 0]"),
    ("conv2d", {**BASE_CONV, "dilation": (0, 1)}, "dilation=[0, 1]"),
    ("conv2d", {**BASE_CONV, "act": "swish"}, "'swish'"),
    ("conv2d", {**BASE_CONV, "stride": 2}, "'stride'=2 is not ints"),
    ("conv2d", {k: v for k, v in BASE_CONV.items() if k != "kw"}, "missing param 'kw'"),
    ("conv2d", {**BASE_CONV, "bogus": 1}, "unknown params ['bogus']"),
    ("linear", dict(m=0, n=3, k=4), "m=0"),
    ("linear", dict(m=2, n=3, k=4, act="mish"), "'mish'"),
    ("relu", dict(numel=0), "numel=0"),
    ("add", dict(numel=-5), "numel=-5"),
    ("copy", dict(numel=1.5), "'numel'=1.5 is not int"),
    ("softmax", dict(rows=2, cols=0), "cols=0"),
    ("max_pool2d", {**BASE_POOL, "kernel": (7, 7)}, "output size 0x0"),
    ("max_pool2d", {**BASE_POOL, "padding": (2, 0)}, "padding=[2, 0]"),
    (
        "max_pool2d",
        {**BASE_POOL, "kernel": (3, 3), "padding": (2, 2), "dilation": (2, 2)},
        "at most half",
    ),
    ("max_pool2d", {**BASE_POOL, "kernel": (2, 2, 2)}, "kernel=[2, 2, 2]"),
    ("max_pool2d", {**BASE_POOL, "stride": (0, 2)}, "stride=[0, 2]"),
    ("max_pool2d", {**BASE_POOL, "dilation": (6, 6)}, "output size 0x0"),
    ("max_pool2d", {**BASE_POOL, "ceil_mode": 1}, "'ceil_mode'=1 is not bool"),
    ("avg_pool2d", {**BASE_POOL, "divisor_override": -2}, "divisor_override=-2"),
    ("avg_pool2d", {**BASE_POOL, "c": -3}, "c=-3"),
    ("avg_pool2d", {**BASE_POOL, "dilation": (1, 1)}, "unknown params ['dilation']"),
    ("adaptive_avg_pool2d", dict(n=1, c=1, h=4, w=4, out_h=0, out_w=2), "out_h=0"),
]


@pytest.mark.parametrize("name,params,needle", BAD_PARAMS)
def test_bad_params_raise_graph_error_naming_the_values(name, params, needle):
    spec = catalog.get(name)
    with pytest.raises(GraphError) as info:
        spec.shapes(spec.with_defaults(params))
    message = str(info.value)
    assert needle in message
    assert repr(name) in message


@pytest.mark.parametrize(
    "name,params",
    [
        ("conv2d", dict(n=1, c_in=1, h=3, w=3, c_out=1, kh=3, kw=3, padding=(1, 0))),
        (
            "max_pool2d",
            dict(n=1, c=1, h=1, w=1, kernel=(2, 2), stride=(2, 2), padding=(1, 1)),
        ),
        (
            "avg_pool2d",
            dict(n=1, c=1, h=3, w=3, kernel=(3, 3), stride=(5, 5), ceil_mode=True),
        ),
    ],
)
def test_edge_shapes_agree_with_torch(name, params):
    spec = catalog.get(name)
    shapes = spec.shapes(spec.with_defaults(params))
    x = torch.randn(shapes["x"])
    if name == "conv2d":
        want = F.conv2d(x, torch.randn(shapes["w"]), padding=params["padding"]).shape
    elif name == "max_pool2d":
        want = F.max_pool2d(x, 2, 2, 1).shape
    else:
        want = F.avg_pool2d(x, 3, 5, ceil_mode=True).shape
    assert shapes["y"] == tuple(want)


def test_conv2d_extents_blocks_and_flops():
    spec = catalog.get("conv2d")
    params = spec.with_defaults(
        dict(
            n=2,
            c_in=8,
            h=16,
            w=16,
            c_out=16,
            kh=3,
            kw=3,
            stride=(2, 2),
            padding=(1, 1),
            groups=2,
        )
    )
    dtypes = {"x": "float32", "w": "float32", "y": "float32"}
    extents = spec.extents_bytes(params, dtypes)
    assert extents == {
        "x": 2 * 8 * 16 * 16 * 4,
        "w": 16 * 4 * 3 * 3 * 4,
        "y": 2 * 16 * 8 * 8 * 4,
    }
    assert spec.bytes_moved(params, dtypes) == sum(extents.values())
    assert spec.virtual_blocks(params) == math.ceil(2 * 16 * 8 * 8 / 4096) == 1
    outputs = 2 * 16 * 8 * 8
    assert spec.flops(params) == 2 * outputs * 4 * 9 + outputs


def test_every_kernel_has_positive_virtual_blocks_and_flops():
    tiny = {
        "conv2d": dict(n=1, c_in=1, h=1, w=1, c_out=1, kh=1, kw=1),
        "linear": dict(m=1, n=1, k=1),
        "relu": dict(numel=1),
        "add": dict(numel=1),
        "copy": dict(numel=1),
        "max_pool2d": dict(n=1, c=1, h=1, w=1, kernel=(1, 1), stride=(1, 1)),
        "avg_pool2d": dict(n=1, c=1, h=1, w=1, kernel=(1, 1), stride=(1, 1)),
        "adaptive_avg_pool2d": dict(n=1, c=1, h=1, w=1, out_h=1, out_w=1),
        "softmax": dict(rows=1, cols=1),
    }
    for name, params in tiny.items():
        spec = catalog.get(name)
        full = spec.with_defaults(params)
        assert spec.virtual_blocks(full) >= 1, name
        assert spec.flops(full) >= 1, name
        assert spec.cta_threads % 32 == 0, name
    big = catalog.get("relu").with_defaults({"numel": 1024 * 10 + 1})
    assert catalog.get("relu").virtual_blocks(big) == 11
    linear = catalog.get("linear")
    assert linear.flops(linear.with_defaults(dict(m=4, n=5, k=6))) == 2 * 4 * 5 * 6 + 20


def _tiny_cnn_graph(batch: int) -> KernelGraph:
    f32 = "float32"
    buffers = (
        Buffer("x", f32, (batch, 3, 8, 8), Role.INPUT),
        Buffer("conv_w", f32, (4, 3, 3, 3), Role.WEIGHT),
        Buffer("conv_b", f32, (4,), Role.WEIGHT),
        Buffer("fc_w", f32, (5, 16), Role.WEIGHT),
        Buffer("fc_b", f32, (5,), Role.WEIGHT),
        Buffer("t_conv", f32, (batch, 4, 8, 8), Role.SCRATCH),
        Buffer("t_pool", f32, (batch, 4, 4, 4), Role.SCRATCH),
        Buffer("t_avg", f32, (batch, 4, 2, 2), Role.SCRATCH),
        Buffer("logits", f32, (batch, 5), Role.SCRATCH),
        Buffer("probs", f32, (batch, 5), Role.OUTPUT),
    )
    calls = (
        KernelCall(
            "conv2d",
            {"x": "x", "w": "conv_w", "bias": "conv_b", "y": "t_conv"},
            dict(n=batch, c_in=3, h=8, w=8, c_out=4, kh=3, kw=3, padding=[1, 1]),
            where="model.conv",
        ),
        KernelCall("relu", {"x": "t_conv", "y": "t_conv"}, {"numel": batch * 256}),
        KernelCall(
            "max_pool2d",
            {"x": "t_conv", "y": "t_pool"},
            dict(n=batch, c=4, h=8, w=8, kernel=[2, 2], stride=[2, 2]),
        ),
        KernelCall(
            "adaptive_avg_pool2d",
            {"x": "t_pool", "y": "t_avg"},
            dict(n=batch, c=4, h=4, w=4, out_h=2, out_w=2),
        ),
        # flatten: t_avg [batch,4,2,2] is read as [batch,16] from the same buffer.
        KernelCall(
            "linear",
            {"x": "t_avg", "w": "fc_w", "bias": "fc_b", "y": "logits"},
            dict(m=batch, n=5, k=16),
        ),
        KernelCall("softmax", {"x": "logits", "y": "probs"}, dict(rows=batch, cols=5)),
    )
    return KernelGraph("tiny_cnn", buffers, calls)


def test_tiny_cnn_graph_validates_and_matches_torch_module():
    torch.manual_seed(8)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 5),
        torch.nn.Softmax(dim=-1),
    ).eval()
    x = torch.randn(3, 3, 8, 8)
    graph = _tiny_cnn_graph(batch=3)
    validate(graph)
    validate(KernelGraph.from_wire(graph.to_wire()))
    weights = {
        "conv_w": model[0].weight.detach(),
        "conv_b": model[0].bias.detach(),
        "fc_w": model[5].weight.detach(),
        "fc_b": model[5].bias.detach(),
    }
    out = run_graph(graph, weights, {"x": x})["probs"]
    with torch.no_grad():
        want = model(x)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_call_reading_past_its_buffer_is_rejected():
    graph = _tiny_cnn_graph(batch=2)
    calls = list(graph.calls)
    calls[1] = KernelCall(
        "relu", {"x": "t_conv", "y": "t_conv"}, {"numel": 2 * 256 + 1}
    )
    bad = KernelGraph("bad", graph.buffers, tuple(calls))
    with pytest.raises(GraphError, match="past its end") as info:
        validate(bad)
    assert "'t_conv'" in str(info.value)
    assert "call 1 (relu)" in str(info.value)


def test_graph_with_bad_kernel_params_names_the_call():
    graph = _tiny_cnn_graph(batch=2)
    calls = list(graph.calls)
    calls[0] = KernelCall(
        "conv2d",
        calls[0].args,
        {**calls[0].params, "groups": 2},
        where="model.conv",
    )
    with pytest.raises(GraphError, match=r"call 0 \(conv2d, model.conv\).*groups=2"):
        validate(KernelGraph("bad", graph.buffers, tuple(calls)))


def test_in_place_over_a_broadcast_input_is_refused():
    """y may share a buffer only with an input read element for element."""
    buffers = (
        Buffer("a", "float32", (4, 8), Role.INPUT),
        Buffer("row", "float32", (8,), Role.INPUT),
        Buffer("s", "float32", (32,), Role.SCRATCH),
        Buffer("out", "float32", (4, 8), Role.OUTPUT),
    )
    params = dict(op="add", shape=(1, 1, 4, 8), a_shape=(1, 1, 4, 8))
    ok = (
        KernelCall("copy", {"x": "a", "y": "s"}, {"numel": 32}),
        KernelCall(
            "binary",
            {"a": "s", "b": "row", "y": "s"},
            {**params, "b_shape": (1, 1, 1, 8)},
        ),
        KernelCall("copy", {"x": "s", "y": "out"}, {"numel": 32}),
    )
    validate(KernelGraph("ok", buffers, ok))
    racing = (
        ok[0],
        KernelCall(
            "binary",
            {"a": "row", "b": "s", "y": "s"},
            {**params, "a_shape": (1, 1, 1, 8), "b_shape": (1, 1, 4, 8)},
        ),
        ok[2],
    )
    validate(KernelGraph("fine", buffers, racing))  # b is s, read element-wise
    shared_row = (
        KernelCall("copy", {"x": "a", "y": "s"}, {"numel": 32}),
        KernelCall(
            "binary",
            {"a": "a", "b": "s", "y": "s"},
            {**params, "b_shape": (1, 1, 1, 8)},
        ),
        ok[2],
    )
    with pytest.raises(GraphError, match="operand 'b' \\[1, 1, 1, 8\\] shares"):
        validate(KernelGraph("bad", buffers, shared_row))
