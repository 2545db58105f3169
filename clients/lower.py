"""Lowering: a torch module -> a KernelGraph of catalog kernels, plus its weights.

Owns the pipeline torch.export -> core ATen -> KernelGraph: constant folding,
batch norm folded into convolutions, relu fused into its producer, views and
reshapes as buffer aliases (no kernel), scratch buffers reused by liveness, and
UnsupportedOp errors naming the ATen op and the user's source line. Imports
torch, reefd.errors, reefd.graph and reefd.kernels.catalog; no sockets, no I/O.
"""

from __future__ import annotations

import math
import operator
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.export.graph_signature import InputKind, OutputKind

from reefd.errors import UnsupportedOp
from reefd.graph import Buffer, KernelCall, KernelGraph, Role, validate
from reefd.kernels import catalog

aten = torch.ops.aten
DTYPE = "float32"
_FUSES_RELU = ("conv2d", "linear", "add")
_TRANSPOSES = (aten.t.default, aten.permute.default, aten.transpose.int)
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


@dataclass(frozen=True)
class Lowered:
    """A lowered model: the graph, its weights by buffer name, and its I/O names."""

    graph: KernelGraph
    weights: dict[str, torch.Tensor]
    input_names: list[str]
    output_names: list[str]

    @property
    def weight_bytes(self) -> int:
        return self.graph.weight_bytes()

    @property
    def scratch_bytes(self) -> int:
        return sum(b.nbytes for b in self.graph.by_role(Role.SCRATCH))


@dataclass(eq=False)
class _Const:
    """A value known at lowering time; `origin` names where it came from."""

    value: Any
    origin: str
    transpose_of: _Const | None = None


@dataclass(eq=False)
class _Storage:
    """The memory of one computed value before buffers are assigned.

    Aliases (views, reshapes) share one storage. Input, weight and output
    storages carry their buffer name; scratch ones get a slot at assignment.
    """

    numel: int
    role: Role
    shape: tuple[int, ...]
    name: str = ""
    tensor: torch.Tensor | None = None


@dataclass(eq=False)
class _Call:
    kernel: str
    args: dict[str, _Storage]
    params: dict[str, Any]
    where: str


@dataclass(eq=False)
class _Value:
    """A tensor in a storage. `call` is set only on the exact output of a call
    (not on aliases): the peepholes (relu fusion, BN folding) rewrite it."""

    storage: _Storage
    shape: tuple[int, ...]
    call: _Call | None = None


def lower(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    name: str | None = None,
    *,
    reuse_scratch: bool = True,
) -> Lowered:
    """Lower `model` for `example_inputs` to a validated KernelGraph.

    Raises UnsupportedOp naming the ATen op and the user's source line when the
    catalog lacks a kernel for it (or for its dtype).
    """
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
            what = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise UnsupportedOp(f"input {i} is {what}; reefd lowers {DTYPE} only")
    model.eval()
    with warnings.catch_warnings():
        # torch 2.13's own pytree code trips its LeafSpec deprecation; not ours.
        warnings.filterwarnings(
            "ignore", message=".*LeafSpec.*", category=FutureWarning
        )
        ep = torch.export.export(model, tuple(example_inputs)).run_decompositions()
    lw = _Lowerer(ep)
    lw.walk()
    graph = lw.finish(name or type(model).__name__, reuse_scratch)
    validate(graph)
    weights = {b.name: lw.weight_tensors[b.name] for b in graph.weights}
    return Lowered(
        graph,
        weights,
        [b.name for b in lw.inputs],
        [s.name for s in lw.outputs],
    )


class _Lowerer:
    """Walks an ExportedProgram's graph once, building calls on storages."""

    def __init__(self, ep: torch.export.ExportedProgram) -> None:
        self.ep = ep
        self.env: dict[fx.Node, Any] = {}
        self.calls: list[_Call] = []
        self.inputs: list[_Storage] = []
        self.outputs: list[_Storage] = []
        self.weight_tensors: dict[str, torch.Tensor] = {}
        self._weights: dict[_Const, _Storage] = {}

    # -- walking ---------------------------------------------------------------

    def walk(self) -> None:
        specs = {s.arg.name: s for s in self.ep.graph_signature.input_specs}
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                self.env[node] = self._placeholder(node, specs[node.name])
            elif node.op == "call_function":
                self.env[node] = self._call_function(node)
            elif node.op == "output":
                self._outputs(node)
            else:
                raise self.unsupported(node, f"fx op {node.op!r}")

    def _placeholder(self, node: fx.Node, spec: Any) -> Any:
        if spec.kind is InputKind.USER_INPUT:
            shape = _shape(node)
            storage = _Storage(
                math.prod(shape), Role.INPUT, shape, f"in{len(self.inputs)}"
            )
            self.inputs.append(storage)
            return _Value(storage, shape)
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            found = self.ep.state_dict.get(spec.target)
            tensor = self.ep.constants[spec.target] if found is None else found
            return _Const(tensor.detach(), spec.target)
        if spec.kind is InputKind.CONSTANT_TENSOR:
            return _Const(self.ep.constants[spec.target].detach(), spec.target)
        raise self.unsupported(node, f"input kind {spec.kind.name}")

    def _call_function(self, node: fx.Node) -> Any:
        if all(isinstance(self.env[n], _Const) for n in node.all_input_nodes):
            return self._fold(node)
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and val.dtype != torch.float32:
            raise self.unsupported(node, f"it produces {val.dtype}; {DTYPE} only")
        handler = _HANDLERS.get(node.target)
        if handler is None:
            handler = _HANDLERS.get(getattr(node.target, "overloadpacket", None))
        if handler is None:
            raise self.unsupported(node)
        return handler(self, node)

    def _fold(self, node: fx.Node) -> _Const:
        """Evaluate a node whose inputs are all constants, now, with torch."""
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), self._const_value)
        with torch.no_grad():
            value = node.target(*args, **kwargs)
        consts = [self.env[n] for n in node.all_input_nodes]
        stem = consts[0].origin if consts else node.name
        op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        folded = _Const(value, f"{stem}.{op}")
        if len(consts) == 1 and _is_transpose_2d(node):
            folded.transpose_of = consts[0]
        return folded

    def _const_value(self, n: fx.Node) -> Any:
        return self.env[n].value

    def _outputs(self, node: fx.Node) -> None:
        specs = self.ep.graph_signature.output_specs
        for arg, spec in zip(node.args[0], specs, strict=True):
            if spec.kind is not OutputKind.USER_OUTPUT:
                raise self.unsupported(node, f"model output kind {spec.kind.name}")
            got = self.env[arg] if isinstance(arg, fx.Node) else arg
            name = f"out{len(self.outputs)}"
            if isinstance(got, _Const) and isinstance(got.value, torch.Tensor):
                got = _Value(self.weight(got), tuple(got.value.shape) or (1,))
            if not isinstance(got, _Value):
                raise UnsupportedOp(f"model output {name} is {type(got).__name__}")
            src = got.storage
            if src.role is Role.SCRATCH:  # first claim on a computed value
                src.role, src.name, src.shape = Role.OUTPUT, name, got.shape
                self.outputs.append(src)
                continue
            out = _Storage(src.numel, Role.OUTPUT, got.shape, name)
            where = _where(arg) if isinstance(arg, fx.Node) else ""
            self.calls.append(
                _Call("copy", {"x": src, "y": out}, {"numel": src.numel}, where)
            )
            self.outputs.append(out)

    # -- helpers for handlers --------------------------------------------------

    def value(self, node: fx.Node, arg: Any) -> _Value:
        got = self.env.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(got, _Const) and isinstance(got.value, torch.Tensor):
            return _Value(self.weight(got), tuple(got.value.shape))
        if not isinstance(got, _Value):
            raise self.unsupported(node, f"operand {arg!r} is not a tensor")
        return got

    def const(self, node: fx.Node, arg: Any, what: str) -> _Const:
        got = self.env.get(arg) if isinstance(arg, fx.Node) else None
        if not isinstance(got, _Const) or not isinstance(got.value, torch.Tensor):
            raise self.unsupported(node, f"its {what} must be a constant tensor")
        return got

    def weight(self, const: _Const) -> _Storage:
        """The weight storage holding `const` (one per constant)."""
        if const not in self._weights:
            self._weights[const] = self.new_weight(const.value, const.origin)
        return self._weights[const]

    def new_weight(self, tensor: torch.Tensor, origin: str) -> _Storage:
        if tensor.dtype != torch.float32:
            raise UnsupportedOp(f"weight {origin!r} is {tensor.dtype}; {DTYPE} only")
        name, i = f"w:{origin}", 1
        while name in self.weight_tensors:
            name, i = f"w:{origin}#{i}", i + 1
        shape = tuple(tensor.shape) or (1,)
        tensor = tensor.detach().contiguous().reshape(shape)
        self.weight_tensors[name] = tensor
        return _Storage(tensor.numel(), Role.WEIGHT, shape, name, tensor)

    def emit(
        self,
        node: fx.Node,
        kernel: str,
        args: dict[str, _Storage],
        params: dict[str, Any],
        shape: tuple[int, ...] | None = None,
    ) -> _Value:
        """Append a call writing a new scratch storage shaped like `node`."""
        shape = shape or _shape(node)
        out = _Storage(math.prod(shape), Role.SCRATCH, shape)
        call = _Call(kernel, {**args, "y": out}, params, _where(node))
        self.calls.append(call)
        return _Value(out, shape, call)

    def unsupported(self, node: fx.Node, reason: str = "") -> UnsupportedOp:
        shapes = [
            list(v.shape) if isinstance(v := n.meta.get("val"), torch.Tensor) else "?"
            for n in node.all_input_nodes
        ]
        op = str(node.target) if node.op == "call_function" else node.op
        why = f" ({reason})" if reason else ""
        where = _where(node) or "no source location recorded"
        return UnsupportedOp(
            f"{op} is not supported by the reefd kernel catalog{why}; "
            f"input shapes {shapes}; at {where}"
        )

    # -- buffer assignment -----------------------------------------------------

    def finish(self, name: str, reuse_scratch: bool) -> KernelGraph:
        slots = _assign_scratch(self.calls, reuse_scratch)
        weights: dict[str, _Storage] = {}
        for call in self.calls:
            for s in call.args.values():
                if s.role is Role.WEIGHT:
                    weights.setdefault(s.name, s)
        buffers = [
            *(Buffer(s.name, DTYPE, s.shape, Role.INPUT) for s in self.inputs),
            *(Buffer(s.name, DTYPE, s.shape, Role.WEIGHT) for s in weights.values()),
            *(Buffer(n, DTYPE, (numel,), Role.SCRATCH) for n, numel in slots),
            *(Buffer(s.name, DTYPE, s.shape, Role.OUTPUT) for s in self.outputs),
        ]
        calls = tuple(
            KernelCall(
                c.kernel, {op: s.name for op, s in c.args.items()}, c.params, c.where
            )
            for c in self.calls
        )
        return KernelGraph(name, tuple(buffers), calls)


def _assign_scratch(calls: list[_Call], reuse: bool) -> list[tuple[str, int]]:
    """Give every scratch storage a slot name; returns the slots as (name, numel).

    With `reuse`, a slot whose storage's last reader has run goes back to a free
    pool; a later producer takes the best-fitting free slot (growing the largest
    if none is big enough). Kernels that allow in place take a slot freed by
    their own inputs.
    """
    last_read: dict[_Storage, int] = {}
    for i, call in enumerate(calls):
        for op, s in call.args.items():
            if op != "y":
                last_read[s] = i
    sizes: list[int] = []
    free: list[int] = []
    slot_of: dict[_Storage, int] = {}

    def take(numel: int) -> int:
        fits = [j for j in free if sizes[j] >= numel]
        if fits:
            j = min(fits, key=lambda j: sizes[j])
        elif free:
            j = max(free, key=lambda j: sizes[j])
            sizes[j] = numel
        else:
            sizes.append(numel)
            return len(sizes) - 1
        free.remove(j)
        return j

    for i, call in enumerate(calls):
        out = call.args["y"]
        reads = dict.fromkeys(s for op, s in call.args.items() if op != "y")
        dying = [slot_of[s] for s in reads if s in slot_of and last_read[s] == i]
        if reuse and catalog.get(call.kernel).inplace_ok:
            free.extend(dying)
            dying = []
        if out.role is Role.SCRATCH:
            slot_of[out] = take(out.numel)
            if out not in last_read:
                dying.append(slot_of[out])
        if reuse:
            free.extend(dying)
    names = [f"s{j}" for j in range(len(sizes))]
    for s, j in slot_of.items():
        s.name = names[j]
    return list(zip(names, sizes, strict=True))


# -- op handlers: each takes the lowerer and a node, returns the node's value ---


def _on_convolution(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
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
        "stride": _pair(a["stride"]),
        "padding": _pair(a["padding"]),
        "dilation": _pair(a["dilation"]),
        "groups": a["groups"],
        "act": "none",
    }
    return lw.emit(node, "conv2d", args, params)


def _on_batch_norm(lw: _Lowerer, node: fx.Node) -> tuple:
    """Fold inference batch norm into the conv2d call that produced its input."""
    a = _bound(node)
    x = lw.value(node, a["input"])
    conv = x.call
    if conv is None or conv.kernel != "conv2d" or len(a["input"].users) != 1:
        reason = "batch norm is lowered only when folded into the conv right before it"
        raise lw.unsupported(node, reason)
    mean = lw.const(node, a["running_mean"], "running mean")
    var = lw.const(node, a["running_var"], "running var").value.double()
    scale = torch.rsqrt(var + a["eps"])
    if a["weight"] is not None:
        scale = scale * lw.const(node, a["weight"], "weight").value.double()
    shift = -mean.value.double() * scale
    if a["bias"] is not None:
        shift = shift + lw.const(node, a["bias"], "bias").value.double()
    old_w, old_b = conv.args["w"], conv.args.get("bias")
    new_w = old_w.tensor.double() * scale.view(-1, 1, 1, 1)
    new_b = shift if old_b is None else old_b.tensor.double() * scale + shift
    tag = mean.origin.rsplit(".", 1)[0]
    w_origin = old_w.name.removeprefix("w:")
    b_origin = old_b.name.removeprefix("w:") if old_b else _sibling(w_origin, "bias")
    conv.args["w"] = lw.new_weight(new_w.float(), f"{w_origin}+{tag}")
    conv.args["bias"] = lw.new_weight(new_b.float(), f"{b_origin}+{tag}")
    return (x, None, None)


def _on_getitem(lw: _Lowerer, node: fx.Node) -> Any:
    seq, index = node.args
    got = lw.env[seq]
    if not isinstance(got, tuple) or got[index] is None:
        raise lw.unsupported(node, f"item {index} of {seq.target} is not lowered")
    item = got[index]
    if len(seq.users) != 1:  # other readers: no peephole may rewrite its producer
        return _Value(item.storage, item.shape)
    return item


def _on_relu(lw: _Lowerer, node: fx.Node) -> _Value:
    """Fuse into the producer's epilogue when this relu is its only reader."""
    src = node.args[0]
    x = lw.value(node, src)
    call = x.call
    if (
        call is not None
        and call.kernel in _FUSES_RELU
        and call.params["act"] == "none"
        and len(src.users) == 1
    ):
        call.params["act"] = "relu"
        return _Value(x.storage, x.shape)
    return lw.emit(node, "relu", {"x": x.storage}, {"numel": x.storage.numel})


def _on_add(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
    if a["alpha"] != 1 or not isinstance(a["other"], fx.Node):
        raise lw.unsupported(node, "only tensor + tensor with alpha 1")
    x, y = lw.value(node, a["self"]), lw.value(node, a["other"])
    if not x.shape == y.shape == _shape(node):
        raise lw.unsupported(node, "add needs two tensors of one shape (no broadcast)")
    args = {"a": x.storage, "b": y.storage}
    return lw.emit(node, "add", args, {"numel": x.storage.numel, "act": "none"})


def _on_addmm(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
    if a["beta"] != 1 or a["alpha"] != 1:
        raise lw.unsupported(node, "only beta = alpha = 1")
    bias = lw.const(node, a["self"], "bias")
    return _linear(lw, node, a["mat1"], a["mat2"], bias)


def _on_mm(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
    return _linear(lw, node, a["self"], a["mat2"], None)


def _linear(
    lw: _Lowerer, node: fx.Node, x_arg: Any, wt_arg: Any, bias: _Const | None
) -> _Value:
    """x[m,k] @ wT[k,n] (+ bias[n]) as `linear` with w = wT.T, a constant."""
    x = lw.value(node, x_arg)
    wt = lw.const(node, wt_arg, "second matrix")
    (m, k), n = x.shape, wt.value.shape[1]
    if wt.transpose_of is None:
        wt.transpose_of = _Const(wt.value.t().contiguous(), f"{wt.origin}.T")
    args = {"x": x.storage, "w": lw.weight(wt.transpose_of)}
    if bias is not None:
        if tuple(bias.value.shape) != (n,):
            raise lw.unsupported(node, f"bias must be [{n}]")
        args["bias"] = lw.weight(bias)
    return lw.emit(node, "linear", args, {"m": m, "n": n, "k": k, "act": "none"})


def _on_max_pool(lw: _Lowerer, node: fx.Node) -> tuple:
    a = _bound(node)
    if any(u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
        raise lw.unsupported(node, "its indices are used")
    kernel = _pair(a["kernel_size"])
    params = {
        **_nchw(lw, node, a["self"]),
        "kernel": kernel,
        "stride": _pair(a["stride"]) or kernel,
        "padding": _pair(a["padding"]),
        "dilation": _pair(a["dilation"]),
        "ceil_mode": bool(a["ceil_mode"]),
    }
    x = lw.value(node, a["self"])
    shape = tuple(node.meta["val"][0].shape)
    return (lw.emit(node, "max_pool2d", {"x": x.storage}, params, shape), None)


def _on_avg_pool(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
    kernel = _pair(a["kernel_size"])
    params = {
        **_nchw(lw, node, a["self"]),
        "kernel": kernel,
        "stride": _pair(a["stride"]) or kernel,
        "padding": _pair(a["padding"]),
        "ceil_mode": bool(a["ceil_mode"]),
        "count_include_pad": bool(a["count_include_pad"]),
        "divisor_override": a["divisor_override"] or 0,
    }
    x = lw.value(node, a["self"])
    return lw.emit(node, "avg_pool2d", {"x": x.storage}, params)


def _on_adaptive_avg_pool(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
    out_h, out_w = _pair(a["output_size"])
    params = {**_nchw(lw, node, a["self"]), "out_h": out_h, "out_w": out_w}
    x = lw.value(node, a["self"])
    return lw.emit(node, "adaptive_avg_pool2d", {"x": x.storage}, params)


def _on_mean(lw: _Lowerer, node: fx.Node) -> _Value:
    """The mean over H and W of NCHW is adaptive pooling to 1x1."""
    a = _bound(node)
    x = lw.value(node, a["self"])
    dims = sorted(d % len(x.shape) for d in a["dim"] or ())
    if len(x.shape) != 4 or dims != [2, 3] or a["dtype"] is not None:
        raise lw.unsupported(node, "only the mean over the last two dims of NCHW")
    params = {**_nchw(lw, node, a["self"]), "out_h": 1, "out_w": 1}
    return lw.emit(node, "adaptive_avg_pool2d", {"x": x.storage}, params)


def _on_softmax(lw: _Lowerer, node: fx.Node) -> _Value:
    a = _bound(node)
    x = lw.value(node, a["self"])
    if a["half_to_float"] or a["dim"] % len(x.shape) != len(x.shape) - 1:
        raise lw.unsupported(node, "only softmax over the last dim")
    cols = x.shape[-1]
    params = {"rows": x.storage.numel // cols, "cols": cols}
    return lw.emit(node, "softmax", {"x": x.storage}, params)


def _on_alias(lw: _Lowerer, node: fx.Node) -> _Value:
    """Ops that keep the row-major element order: the result shares the buffer."""
    if node.target is aten.dropout.default and node.args[2]:
        raise lw.unsupported(node, "dropout in training mode")
    x = lw.value(node, node.args[0])
    return _Value(x.storage, _shape(node))


_HANDLERS: dict[Any, Callable[[_Lowerer, fx.Node], Any]] = {
    aten.convolution.default: _on_convolution,
    aten._native_batch_norm_legit_no_training.default: _on_batch_norm,
    operator.getitem: _on_getitem,
    aten.relu.default: _on_relu,
    aten.add.Tensor: _on_add,
    aten.addmm.default: _on_addmm,
    aten.mm.default: _on_mm,
    aten.max_pool2d_with_indices.default: _on_max_pool,
    aten.avg_pool2d.default: _on_avg_pool,
    aten._adaptive_avg_pool2d.default: _on_adaptive_avg_pool,
    aten.mean.dim: _on_mean,
    aten._softmax.default: _on_softmax,
    aten.dropout.default: _on_alias,
    **dict.fromkeys(
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
        ),
        _on_alias,
    ),
}


# -- small helpers ---------------------------------------------------------------


def _bound(node: fx.Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    out: dict[str, Any] = {}
    for i, arg in enumerate(node.target._schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(int(d) for d in node.meta["val"].shape)


def _pair(value: Any) -> list[int]:
    """An int or 1-/2-int list as a 2-int list ([] stays [])."""
    if isinstance(value, int):
        return [value, value]
    value = [int(v) for v in value]
    return value * 2 if len(value) == 1 else value


def _nchw(lw: _Lowerer, node: fx.Node, arg: Any) -> dict[str, int]:
    shape = lw.value(node, arg).shape
    if len(shape) != 4:
        raise lw.unsupported(node, "only 4-D NCHW input")
    return dict(zip(("n", "c", "h", "w"), shape, strict=True))


def _is_transpose_2d(node: fx.Node) -> bool:
    """Whether the node swaps the two dims of a 2-D tensor."""
    if node.meta["val"].dim() != 2 or node.target not in _TRANSPOSES:
        return False
    if node.target is aten.permute.default:
        return [d % 2 for d in node.args[1]] == [1, 0]
    if node.target is aten.transpose.int:
        return node.args[1] % 2 != node.args[2] % 2
    return True


def _sibling(origin: str, leaf: str) -> str:
    """'conv1.weight' -> 'conv1.bias'."""
    stem, _, _ = origin.rpartition(".")
    return f"{stem}.{leaf}" if stem else leaf


def _where(node: fx.Node) -> str:
    """'path:line in func: code' for the innermost user frame of the node's trace."""
    lines = (node.meta.get("stack_trace") or "").splitlines()
    where = ""
    for i, line in enumerate(lines):
        m = _FRAME.search(line)
        if m is None or m["file"].startswith(_TORCH_DIR):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) else ""
        code = "" if _FRAME.search(code) else code
        path = os.path.relpath(m["file"])
        path = m["file"] if path.startswith("..") else path
        where = f"{path}:{m['line']} in {m['func']}" + (f": {code}" if code else "")
    return where
