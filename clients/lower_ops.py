"""Per-op lowering: each core ATen op -> catalog kernel calls (or a view).

Every handler takes the Lowerer and an fx node and returns the node's value: a
Value, a Const, or a tuple of them for multi-output ops. Peepholes live here:
batch norm folded into the conv before it, activations fused into the epilogue
of their producer, a scalar multiply folded into a batched matmul, a transposed
second operand of bmm read in place. The view handlers (no kernel) are in
lower_views.py; HANDLERS maps every supported op to its handler. Imports torch
and the lowering modules.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from reefd.clients.lower import Lowerer
from reefd.clients.lower_ir import (
    Const,
    Storage,
    Value,
    bound,
    dense_strides,
    node_shape,
    numel,
    pair,
    sibling,
)
from reefd.clients.lower_views import (
    on_expand,
    on_permute,
    on_reshape,
    on_select,
    on_slice,
    on_transpose,
)
from reefd.graph import Role

aten = torch.ops.aten
_ACT_PRODUCERS = ("conv2d", "linear", "add", "binary", "channel_affine")
BINARY_DIMS = 4
"""Dims of the binary kernel's broadcast shapes (after merging)."""


# -- convolution, normalization ---------------------------------------------------


def on_convolution(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    x = lw.value(node, a["input"])
    w = lw.const(node, a["weight"], "weight")
    if a["transposed"] or len(x.shape) != 4 or w.value.dim() != 4:
        raise lw.unsupported(node, "only 2-D, non-transposed convolution")
    args = {"x": x.storage, "w": lw.weight(w)}
    if a["bias"] is not None:
        args["bias"] = lw.weight(lw.const(node, a["bias"], "bias"))
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.value.shape
    params = {
        **{"n": n, "c_in": c_in, "h": h, "w": wd, "c_out": c_out, "kh": kh, "kw": kw},
        "stride": pair(a["stride"]),
        "padding": pair(a["padding"]),
        "dilation": pair(a["dilation"]),
        "groups": a["groups"],
        "act": "none",
    }
    return lw.emit(node, "conv2d", args, params)


def on_batch_norm(lw: Lowerer, node: fx.Node) -> tuple:
    """Inference batch norm: folded into the conv2d right before it when it is
    that conv's only reader, else a per-channel scale and shift."""
    a = bound(node)
    x = lw.value(node, a["input"])
    mean = lw.const(node, a["running_mean"], "running mean")
    var = lw.const(node, a["running_var"], "running var").value.double()
    scale = torch.rsqrt(var + a["eps"])
    if a["weight"] is not None:
        scale = scale * lw.const(node, a["weight"], "weight").value.double()
    shift = -mean.value.double() * scale
    if a["bias"] is not None:
        shift = shift + lw.const(node, a["bias"], "bias").value.double()
    tag = mean.origin.rsplit(".", 1)[0]
    conv = x.call
    if conv is not None and conv.kernel == "conv2d" and len(a["input"].users) == 1:
        old_w, old_b = conv.args["w"], conv.args.get("bias")
        new_w = old_w.tensor.double() * scale.view(-1, 1, 1, 1)
        new_b = shift if old_b is None else old_b.tensor.double() * scale + shift
        w_origin = old_w.name.removeprefix("w:")
        b_origin = old_b.name.removeprefix("w:") if old_b else sibling(w_origin, "bias")
        conv.args["w"] = lw.new_weight(new_w.float(), f"{w_origin}+{tag}")
        conv.args["bias"] = lw.new_weight(new_b.float(), f"{b_origin}+{tag}")
        return (x, None, None)
    if len(x.shape) < 2:
        raise lw.unsupported(node, "batch norm needs [n, c, ...] input")
    params = {
        "n": x.shape[0],
        "c": x.shape[1],
        "inner": numel(x.shape[2:]),
        "act": "none",
    }
    args = {
        "x": x.storage,
        "scale": lw.new_weight(scale.float(), f"{tag}.scale"),
        "shift": lw.new_weight(shift.float(), f"{tag}.shift"),
    }
    return (lw.emit(node, "channel_affine", args, params, x.shape), None, None)


def on_layer_norm(lw: Lowerer, node: fx.Node) -> tuple:
    a = bound(node)
    x = lw.value(node, a["input"])
    cols = numel(tuple(a["normalized_shape"]))
    args = {"x": x.storage}
    for key in ("weight", "bias"):
        if a[key] is not None:
            args[key] = lw.weight(lw.const(node, a[key], key))
    params = {"rows": numel(x.shape) // cols, "cols": cols, "eps": float(a["eps"])}
    return (lw.emit(node, "layer_norm", args, params, x.shape), None, None)


# -- activations --------------------------------------------------------------------


def _activation(lw: Lowerer, node: fx.Node, act: str) -> Value:
    """Fuse into the producer's epilogue when this is its only reader, else a
    kernel of its own (`relu`, or `unary`)."""
    src = node.args[0]
    x = lw.view(node, src)
    call = x.call
    if (
        call is not None
        and call.kernel in _ACT_PRODUCERS
        and call.params.get("act", "none") == "none"
        and len(src.users) == 1
    ):
        call.params["act"] = act
        return Value(x.storage, x.shape)
    x = lw.dense(node, x)
    n = numel(x.shape)
    if act == "relu":
        return lw.emit(node, "relu", {"x": x.storage}, {"numel": n})
    return lw.emit(node, "unary", {"x": x.storage}, {"numel": n, "op": act})


def _act_handler(act: str) -> Callable[[Lowerer, fx.Node], Value]:
    return lambda lw, node: _activation(lw, node, act)


def on_gelu(lw: Lowerer, node: fx.Node) -> Value:
    approximate = bound(node)["approximate"]
    return _activation(lw, node, "gelu_tanh" if approximate == "tanh" else "gelu")


def on_hardtanh(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    lo, hi = float(a["min_val"]), float(a["max_val"])
    if (lo, hi) == (0.0, 6.0):
        return _activation(lw, node, "relu6")
    return _clamp(lw, node, lo, hi)


def on_clamp(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    lo = -math.inf if a["min"] is None else float(a["min"])
    hi = math.inf if a["max"] is None else float(a["max"])
    return _clamp(lw, node, lo, hi)


def _clamp(lw: Lowerer, node: fx.Node, lo: float, hi: float) -> Value:
    x = lw.value(node, node.args[0])
    big = torch.finfo(torch.float32).max
    params = {
        "numel": numel(x.shape),
        "op": "clamp",
        "lo": max(lo, -big),
        "hi": min(hi, big),
    }
    return lw.emit(node, "unary", {"x": x.storage}, params)


# -- arithmetic -------------------------------------------------------------------


def _scalar(lw: Lowerer, arg: Any) -> float | None:
    """A Python number, or a one-element constant tensor, as a float."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return float(arg)
    got = lw.env.get(arg) if isinstance(arg, fx.Node) else None
    t = got.value if isinstance(got, Const) else None
    if isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point():
        return float(t.item())
    return None


def _arith(op: str) -> Callable[[Lowerer, fx.Node], Value]:
    def handler(lw: Lowerer, node: fx.Node) -> Value:
        a = bound(node)
        alpha = a.get("alpha", 1)
        alpha = 1 if alpha is None else alpha
        left, right = a["self"], a["other"]
        s_left, s_right = _scalar(lw, left), _scalar(lw, right)
        if s_right is not None and s_left is None:
            return _tensor_scalar(lw, node, op, left, s_right * alpha)
        if s_left is not None and s_right is None and op in ("add", "sub", "mul"):
            return _scalar_tensor(lw, node, op, s_left, right, alpha)
        if alpha != 1:
            raise lw.unsupported(node, "alpha other than 1 on two tensors")
        return _binary(lw, node, op, left, right)

    return handler


def _tensor_scalar(lw: Lowerer, node: fx.Node, op: str, arg: Any, s: float) -> Value:
    """x op s. Multiplying by s (or dividing by a power of two) folds into a
    bmm's scale; division by other numbers stays an exact division."""
    x = lw.view(node, arg)
    if op in ("mul", "div"):
        factor = s if op == "mul" else 1.0 / s
        exact = op == "mul" or (s != 0 and math.frexp(abs(s))[0] == 0.5)
        call = x.call
        fold = exact and call is not None and call.kernel == "bmm"
        if fold and len(arg.users) == 1:
            call.params["scale"] *= factor
            return Value(x.storage, x.shape)
        if op == "div" and not exact:
            s_const = Const(torch.tensor([s], dtype=torch.float32), f"{node.name}.s")
            return _binary_values(
                lw, node, op, lw.dense(node, x), _const_value(lw, s_const)
            )
    x = lw.dense(node, x)
    scale, shift = {
        "add": (1.0, s),
        "sub": (1.0, -s),
        "mul": (s, 0.0),
        "div": (1.0 / s if s else math.inf, 0.0),
    }[op]
    params = {"numel": numel(x.shape), "op": "affine", "scale": scale, "shift": shift}
    return lw.emit(node, "unary", {"x": x.storage}, params)


def _scalar_tensor(
    lw: Lowerer, node: fx.Node, op: str, s: float, arg: Any, alpha: float
) -> Value:
    """s op alpha * x as one affine kernel (add, sub and mul only)."""
    x = lw.value(node, arg)
    scale, shift = {
        "add": (alpha, s),
        "sub": (-alpha, s),
        "mul": (s * alpha, 0.0),
    }[op]
    params = {"numel": numel(x.shape), "op": "affine", "scale": scale, "shift": shift}
    return lw.emit(node, "unary", {"x": x.storage}, params)


def _const_value(lw: Lowerer, const: Const) -> Value:
    return Value(lw.weight(const), tuple(const.value.shape) or (1,))


def _binary(lw: Lowerer, node: fx.Node, op: str, left: Any, right: Any) -> Value:
    return _binary_values(lw, node, op, lw.value(node, left), lw.value(node, right))


def _binary_values(lw: Lowerer, node: fx.Node, op: str, x: Value, y: Value) -> Value:
    out = node_shape(node)
    if op == "add" and x.shape == y.shape == out:
        params = {"numel": numel(out), "act": "none"}
        return lw.emit(node, "add", {"a": x.storage, "b": y.storage}, params)
    shapes = _broadcast_dims(out, x.shape, y.shape)
    if shapes is None:
        raise lw.unsupported(node, f"a broadcast needing more than {BINARY_DIMS} dims")
    o, sa, sb = shapes
    params = {"op": op, "shape": o, "a_shape": sa, "b_shape": sb, "act": "none"}
    return lw.emit(node, "binary", {"a": x.storage, "b": y.storage}, params, out)


def _broadcast_dims(
    out: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]
) -> tuple[tuple[int, ...], ...] | None:
    """The three shapes as BINARY_DIMS dims each: leading 1s, size-1 output dims
    dropped, neighbours with the same broadcast pattern merged."""
    rank = len(out)
    a = (1,) * (rank - len(a)) + a
    b = (1,) * (rank - len(b)) + b
    dims: list[list[int]] = []
    for o, da, db in zip(out, a, b, strict=True):
        if o == 1:
            continue
        pattern = (da == o, db == o)
        if dims and (dims[-1][1] == dims[-1][0], dims[-1][2] == dims[-1][0]) == pattern:
            dims[-1] = [dims[-1][0] * o, dims[-1][1] * da, dims[-1][2] * db]
        else:
            dims.append([o, da, db])
    if len(dims) > BINARY_DIMS:
        return None
    dims = [[1, 1, 1]] * (BINARY_DIMS - len(dims)) + dims
    return tuple(tuple(d[i] for d in dims) for i in range(3))


# -- matrix products --------------------------------------------------------------


def on_addmm(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    if a["beta"] != 1 or a["alpha"] != 1:
        raise lw.unsupported(node, "only beta = alpha = 1")
    bias = lw.const(node, a["self"], "bias")
    return _linear(lw, node, a["mat1"], a["mat2"], bias)


def on_mm(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    if not isinstance(lw.env.get(a["mat2"]), Const):
        return _bmm(lw, node, a["self"], a["mat2"], batched=False)
    return _linear(lw, node, a["self"], a["mat2"], None)


def on_bmm(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    return _bmm(lw, node, a["self"], a["mat2"], batched=True)


def _linear(
    lw: Lowerer, node: fx.Node, x_arg: Any, wt_arg: Any, bias: Const | None
) -> Value:
    """x[m,k] @ wT[k,n] (+ bias[n]) as `linear` with w = wT.T, a constant."""
    x = lw.value(node, x_arg)
    wt = lw.const(node, wt_arg, "second matrix")
    (m, k), n = x.shape, wt.value.shape[1]
    if wt.transpose_of is None:
        wt.transpose_of = Const(wt.value.t().contiguous(), f"{wt.origin}.T")
    args = {"x": x.storage, "w": lw.weight(wt.transpose_of)}
    if bias is not None:
        if tuple(bias.value.shape) != (n,):
            raise lw.unsupported(node, f"bias must be [{n}]")
        args["bias"] = lw.weight(bias)
    return lw.emit(node, "linear", args, {"m": m, "n": n, "k": k, "act": "none"})


def _bmm(lw: Lowerer, node: fx.Node, a_arg: Any, b_arg: Any, batched: bool) -> Value:
    """a[B,m,k] @ b[B,k,n]; b is read transposed in place when it is the
    transpose of a dense [B,n,k] (attention's Q @ K^T)."""
    a = lw.value(node, a_arg)
    scale = 1.0
    pre = a.call
    if pre is not None and _is_exact_scaling(pre.params) and len(a_arg.users) == 1:
        # (x * 2^k) @ b == (x @ b) * 2^k exactly: fold the scaling into bmm
        lw.calls.remove(pre)
        scale = pre.params["scale"]
        a = Value(pre.args["x"], a.shape)
    b = lw.view(node, b_arg)
    shape_a = a.shape if batched else (1, *a.shape)
    shape_b = b.shape if batched else (1, *b.shape)
    batch, m, k = shape_a
    n = shape_b[2]
    strides, offset = b.layout()
    strides = strides if batched else (0, *strides)
    trans_b = (
        offset == 0 and strides[1:] == (1, k) and (batch == 1 or strides[0] == n * k)
    )
    if not trans_b:
        b = lw.dense(node, b)
    params = {
        "batch": batch,
        "m": m,
        "n": n,
        "k": k,
        "trans_b": trans_b,
        "scale": scale,
        "precision": "ieee",
    }
    return lw.emit(node, "bmm", {"a": a.storage, "b": b.storage}, params)


def _is_exact_scaling(p: dict[str, Any]) -> bool:
    """A unary affine x * 2^k (no shift): exact in float32, so it commutes."""
    if p.get("op") != "affine" or p.get("shift", 0.0) != 0.0:
        return False
    scale = p.get("scale", 1.0)
    return scale != 0 and math.frexp(abs(scale))[0] == 0.5


# -- pooling and reductions --------------------------------------------------------


def on_max_pool(lw: Lowerer, node: fx.Node) -> tuple:
    a = bound(node)
    if any(u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
        raise lw.unsupported(node, "its indices are used")
    kernel = pair(a["kernel_size"])
    x = lw.value(node, a["self"])
    params = {
        **_nchw(lw, node, x),
        "kernel": kernel,
        "stride": pair(a["stride"]) or kernel,
        "padding": pair(a["padding"]),
        "dilation": pair(a["dilation"]),
        "ceil_mode": bool(a["ceil_mode"]),
    }
    shape = tuple(node.meta["val"][0].shape)
    return (lw.emit(node, "max_pool2d", {"x": x.storage}, params, shape), None)


def on_avg_pool(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    kernel = pair(a["kernel_size"])
    x = lw.value(node, a["self"])
    params = {
        **_nchw(lw, node, x),
        "kernel": kernel,
        "stride": pair(a["stride"]) or kernel,
        "padding": pair(a["padding"]),
        "ceil_mode": bool(a["ceil_mode"]),
        "count_include_pad": bool(a["count_include_pad"]),
        "divisor_override": a["divisor_override"] or 0,
    }
    return lw.emit(node, "avg_pool2d", {"x": x.storage}, params)


def on_adaptive_avg_pool(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    out_h, out_w = pair(a["output_size"])
    x = lw.value(node, a["self"])
    params = {**_nchw(lw, node, x), "out_h": out_h, "out_w": out_w}
    return lw.emit(node, "adaptive_avg_pool2d", {"x": x.storage}, params)


def on_mean(lw: Lowerer, node: fx.Node) -> Value:
    """The mean over a run of neighbouring dims: [outer, red, inner] -> [outer,
    inner]."""
    a = bound(node)
    x = lw.value(node, a["self"])
    rank = len(x.shape)
    dims = sorted({d % rank for d in a["dim"]}) if a["dim"] else list(range(rank))
    if dims != list(range(dims[0], dims[-1] + 1)) or a["dtype"] is not None:
        raise lw.unsupported(node, "only a mean over neighbouring dims, same dtype")
    params = {
        "outer": numel(x.shape[: dims[0]]),
        "red": numel(x.shape[dims[0] : dims[-1] + 1]),
        "inner": numel(x.shape[dims[-1] + 1 :]),
    }
    return lw.emit(node, "mean", {"x": x.storage}, params)


def on_softmax(lw: Lowerer, node: fx.Node) -> Value:
    """Softmax over the last dim; an additive mask broadcast over rows (the
    attention key-padding bias) that only this softmax reads is fused in."""
    a = bound(node)
    x = lw.value(node, a["self"])
    if a["half_to_float"] or a["dim"] % len(x.shape) != len(x.shape) - 1:
        raise lw.unsupported(node, "only softmax over the last dim")
    cols = x.shape[-1]
    params: dict[str, Any] = {"rows": numel(x.shape) // cols, "cols": cols}
    args = {"x": x.storage}
    add = x.call
    if add is not None and add.kernel == "binary" and len(a["self"].users) == 1:
        group = _mask_group(add.params, cols)
        if group is not None:
            lw.calls.remove(add)
            args = {"x": add.args["a"], "mask": add.args["b"]}
            params["mask_group"] = group
    return lw.emit(node, "softmax", args, params)


def _mask_group(p: dict[str, Any], cols: int) -> int | None:
    """Rows per mask row when a binary call is `scores + mask` with scores
    [1, X, R, cols] and mask [1, X, 1, cols] or [1, 1, 1, cols]; else None."""
    if p["op"] != "add" or p["act"] != "none" or p["a_shape"] != p["shape"]:
        return None
    one, groups, rows, last = p["shape"]
    b = p["b_shape"]
    if one != 1 or last != cols or b[0] != 1 or b[2] != 1 or b[3] != cols:
        return None
    if b[1] == groups:
        return rows
    if b[1] == 1 and groups == 1:
        return rows
    return None


# -- gathers, casts and copies ------------------------------------------------------


def on_embedding(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    table = lw.const(node, a["weight"], "table")
    ids = lw.value(node, a["indices"])
    if table.value.dim() != 2:
        raise lw.unsupported(node, "the table must be 2-D")
    vocab, dim = table.value.shape
    params = {"n": numel(ids.shape), "vocab": vocab, "dim": dim}
    args = {"ids": ids.storage, "table": lw.weight(table)}
    return lw.emit(node, "embedding", args, params)


def on_to_copy(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.view(node, node.args[0])
    want = node.meta["val"].dtype
    if want == torch.float32 and x.storage.dtype == "float32":
        return x
    if want == torch.float32 and x.storage.dtype == "int64":
        x = lw.dense(node, x)
        return lw.emit(node, "cast_i64", {"x": x.storage}, {"numel": numel(x.shape)})
    raise lw.unsupported(node, f"a cast from {x.storage.dtype} to {want}")


def on_cat(lw: Lowerer, node: fx.Node) -> Value:
    """Each input copied into its slice of one new buffer."""
    a = bound(node)
    shape = node_shape(node)
    dim = a["dim"] % len(shape)
    parts = [lw.view(node, t) for t in a["tensors"]]
    dtypes = {p.storage.dtype for p in parts}
    if len(dtypes) != 1:
        raise lw.unsupported(node, f"inputs of dtypes {sorted(dtypes)}")
    out = Storage(numel(shape), Role.SCRATCH, shape, dtype=dtypes.pop())
    strides = dense_strides(shape)
    start = 0
    for part in parts:
        if numel(part.shape) == 0:
            continue
        lw.calls.append(lw.copy_call(part, out, strides, start * strides[dim], node))
        start += part.shape[dim]
    return Value(out, shape)


def on_assert_metadata(lw: Lowerer, node: fx.Node) -> None:
    return None


def _nchw(lw: Lowerer, node: fx.Node, x: Value) -> dict[str, int]:
    if len(x.shape) != 4:
        raise lw.unsupported(node, "only 4-D NCHW input")
    return dict(zip(("n", "c", "h", "w"), x.shape, strict=True))


def _views(ops: tuple[Any, ...]) -> dict[Any, Callable[[Lowerer, fx.Node], Any]]:
    return dict.fromkeys(ops, on_reshape)


def on_getitem(lw: Lowerer, node: fx.Node) -> Any:
    seq, index = node.args
    got = lw.env[seq]
    if not isinstance(got, tuple) or got[index] is None:
        raise lw.unsupported(node, f"item {index} of {seq.target} is not lowered")
    item = got[index]
    if len(seq.users) != 1:  # other readers: no peephole may rewrite its producer
        return Value(item.storage, item.shape, strides=item.strides, offset=item.offset)
    return item


HANDLERS: dict[Any, Callable[[Lowerer, fx.Node], Any]] = {
    aten.convolution.default: on_convolution,
    aten._native_batch_norm_legit_no_training.default: on_batch_norm,
    aten.native_layer_norm.default: on_layer_norm,
    operator.getitem: on_getitem,
    aten.relu.default: _act_handler("relu"),
    aten.silu.default: _act_handler("silu"),
    aten.sigmoid.default: _act_handler("sigmoid"),
    aten.tanh.default: _act_handler("tanh"),
    aten.hardswish.default: _act_handler("hardswish"),
    aten.gelu.default: on_gelu,
    aten.hardtanh.default: on_hardtanh,
    aten.clamp.default: on_clamp,
    aten.add.Tensor: _arith("add"),
    aten.sub.Tensor: _arith("sub"),
    aten.mul.Tensor: _arith("mul"),
    aten.div.Tensor: _arith("div"),
    aten.addmm.default: on_addmm,
    aten.mm.default: on_mm,
    aten.bmm.default: on_bmm,
    aten.max_pool2d_with_indices.default: on_max_pool,
    aten.avg_pool2d.default: on_avg_pool,
    aten._adaptive_avg_pool2d.default: on_adaptive_avg_pool,
    aten.mean.dim: on_mean,
    aten._softmax.default: on_softmax,
    aten.embedding.default: on_embedding,
    aten._to_copy.default: on_to_copy,
    aten.cat.default: on_cat,
    aten._assert_tensor_metadata.default: on_assert_metadata,
    aten.permute.default: on_permute,
    aten.transpose.int: on_transpose,
    aten.t.default: on_transpose,
    aten.expand.default: on_expand,
    aten.select.int: on_select,
    aten.slice.Tensor: on_slice,
    aten.dropout.default: on_reshape,
    **_views(
        (
            aten.view,
            aten._unsafe_view,
            aten.reshape,
            aten.flatten,
            aten.squeeze,
            aten.unsqueeze,
            aten.clone,
            aten.alias,
            aten.detach,
        )
    ),
}
