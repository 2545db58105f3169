"""Lowering: a torch module -> a KernelGraph of catalog kernels, plus its weights.

Owns the pipeline torch.export -> core ATen -> KernelGraph: walking the exported
graph, constant folding, views as strided Values (a copy kernel only where a
consumer needs dense memory), buffer assignment with scratch reused by liveness,
and UnsupportedOp errors naming the ATen op, its input shapes and the user's
source line. The per-op handlers are in lower_ops.py and lower_views.py, the
values they work on in lower_ir.py. Imports torch, reefd.errors, reefd.graph and
reefd.kernels.catalog; no sockets, no I/O.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import fx
from torch.export.graph_signature import InputKind, OutputKind

from reefd.batching import BatchRule, derive, validate_all
from reefd.clients.lower_ir import (
    Call,
    Const,
    Storage,
    Value,
    collapse,
    dense_strides,
    node_shape,
    numel,
    where,
)
from reefd.errors import GraphError, UnsupportedOp
from reefd.graph import Buffer, KernelCall, KernelGraph, Role, validate
from reefd.kernels import catalog
from reefd.kernels.spec import DTYPE_NAME

INPUT_DTYPES = ("float32", "int64")
"""What a model's inputs may be: float32 tensors, and int64 ids (embeddings)."""
COPY_DIMS = 6
"""Dims of the strided_copy kernel (after merging contiguous ones)."""


@dataclass(frozen=True)
class Lowered:
    """A lowered model: the graph, its weights by buffer name, and its I/O names."""

    graph: KernelGraph
    weights: dict[str, torch.Tensor]
    input_names: list[str]
    output_names: list[str]
    batch: BatchRule | None = None
    """Set when the graph serves every batch up to `batch.max_batch`."""

    @property
    def weight_bytes(self) -> int:
        return self.graph.weight_bytes()

    @property
    def scratch_bytes(self) -> int:
        return sum(b.nbytes for b in self.graph.by_role(Role.SCRATCH))


def export(
    model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]
) -> torch.export.ExportedProgram:
    """torch.export, then the core ATen decompositions, in eval mode."""
    for i, t in enumerate(example_inputs):
        name = DTYPE_NAME.get(t.dtype) if isinstance(t, torch.Tensor) else None
        if name not in INPUT_DTYPES:
            what = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise UnsupportedOp(
                f"input {i} is {what}; reefd lowers {' and '.join(INPUT_DTYPES)} "
                "inputs only"
            )
    model.eval()
    with warnings.catch_warnings():
        # torch 2.13's own pytree code trips its LeafSpec deprecation; not ours.
        warnings.filterwarnings(
            "ignore", message=".*LeafSpec.*", category=FutureWarning
        )
        return torch.export.export(model, tuple(example_inputs)).run_decompositions()


def lower(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    name: str | None = None,
    *,
    reuse_scratch: bool = True,
    max_batch: int | None = None,
) -> Lowered:
    """Lower `model` for `example_inputs` to a validated KernelGraph.

    With `max_batch`, dim 0 of every input is the batch: the graph is lowered
    at two batch sizes and serves any batch from 1 to `max_batch` (see
    reefd.batching); UnsupportedOp if the model is not affine in the batch.
    Raises UnsupportedOp naming the ATen op and the user's source line when the
    catalog lacks a kernel for it (or for its dtype).
    """
    if max_batch is None:
        return _lower_once(model, example_inputs, name, reuse_scratch)
    if max_batch < 2:
        raise ValueError(f"max_batch must be >= 2, got {max_batch}")
    low_batch = 2 if max_batch > 2 else 1
    high = _lower_once(
        model, _with_batch(example_inputs, max_batch), name, reuse_scratch
    )
    low = _lower_once(
        model, _with_batch(example_inputs, low_batch), name, reuse_scratch
    )
    try:
        graph, rule = derive(low.graph, high.graph, low_batch, max_batch, max_batch)
        validate_all(graph, rule)
    except GraphError as exc:
        raise UnsupportedOp(
            f"{name or type(model).__name__} cannot serve a dynamic batch: {exc}"
        ) from None
    return replace(high, batch=rule)


def _with_batch(
    inputs: tuple[torch.Tensor, ...], batch: int
) -> tuple[torch.Tensor, ...]:
    """The inputs with `batch` rows along dim 0 (rows repeated cyclically)."""
    out = []
    for i, t in enumerate(inputs):
        if t.dim() == 0 or t.shape[0] == 0:
            raise UnsupportedOp(f"input {i} has no batch dim (dim 0) to vary")
        out.append(t[torch.arange(batch) % t.shape[0]])
    return tuple(out)


def _lower_once(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    name: str | None,
    reuse_scratch: bool,
) -> Lowered:
    lw = Lowerer(export(model, example_inputs))
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


class Lowerer:
    """Walks an ExportedProgram's graph once, building calls on storages."""

    def __init__(self, ep: torch.export.ExportedProgram) -> None:
        self.ep = ep
        self.env: dict[fx.Node, Any] = {}
        self.calls: list[Call] = []
        self.inputs: list[Storage] = []
        self.outputs: list[Storage] = []
        self.weight_tensors: dict[str, torch.Tensor] = {}
        self._weights: dict[Const, Storage] = {}

    # -- walking ---------------------------------------------------------------

    def walk(self) -> None:
        from reefd.clients.lower_ops import HANDLERS

        self._handlers = HANDLERS
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
            shape = node_shape(node)
            dtype = DTYPE_NAME[node.meta["val"].dtype]
            storage = Storage(
                numel(shape), Role.INPUT, shape, f"in{len(self.inputs)}", dtype=dtype
            )
            self.inputs.append(storage)
            return Value(storage, shape)
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            found = self.ep.state_dict.get(spec.target)
            tensor = self.ep.constants[spec.target] if found is None else found
            return Const(tensor.detach(), spec.target)
        if spec.kind is InputKind.CONSTANT_TENSOR:
            return Const(self.ep.constants[spec.target].detach(), spec.target)
        raise self.unsupported(node, f"input kind {spec.kind.name}")

    def _call_function(self, node: fx.Node) -> Any:
        if all(isinstance(self.env[n], Const) for n in node.all_input_nodes):
            return self._fold(node)
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and DTYPE_NAME.get(val.dtype) not in (
            INPUT_DTYPES
        ):
            raise self.unsupported(node, f"it produces {val.dtype}")
        handler = self._handlers.get(node.target)
        if handler is None:
            handler = self._handlers.get(getattr(node.target, "overloadpacket", None))
        if handler is None:
            raise self.unsupported(node)
        return handler(self, node)

    def _fold(self, node: fx.Node) -> Const:
        """Evaluate a node whose inputs are all constants, now, with torch."""
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), self._const_value)
        with torch.no_grad():
            value = node.target(*args, **kwargs)
        consts = [self.env[n] for n in node.all_input_nodes]
        stem = consts[0].origin if consts else node.name
        op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        folded = Const(value, f"{stem}.{op}")
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
            self._output(arg)

    def _output(self, arg: Any) -> None:
        got = self.env[arg] if isinstance(arg, fx.Node) else arg
        name = f"out{len(self.outputs)}"
        if isinstance(got, Const) and isinstance(got.value, torch.Tensor):
            got = Value(self.weight(got), tuple(got.value.shape) or (1,))
        if not isinstance(got, Value):
            raise UnsupportedOp(f"model output {name} is {type(got).__name__}")
        src = got.storage
        claim = (
            src.role is Role.SCRATCH and got.is_dense and numel(got.shape) == src.numel
        )
        if claim:  # the first claim on a whole computed value: no copy
            src.role, src.name, src.shape = Role.OUTPUT, name, got.shape
            self.outputs.append(src)
            return
        out = Storage(numel(got.shape), Role.OUTPUT, got.shape, name, dtype=src.dtype)
        site = where(arg) if isinstance(arg, fx.Node) else ""
        if got.is_dense and src.dtype == "float32":
            n = numel(got.shape)
            self.calls.append(Call("copy", {"x": src, "y": out}, {"numel": n}, site))
        else:
            self.calls.append(self.copy_call(got, out, dense_strides(got.shape), 0))
            self.calls[-1].where = site
        self.outputs.append(out)

    # -- helpers for handlers --------------------------------------------------

    def view(self, node: fx.Node, arg: Any) -> Value:
        """The operand as it is: possibly a strided view of its storage."""
        got = self.env.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(got, Const) and isinstance(got.value, torch.Tensor):
            return Value(self.weight(got), tuple(got.value.shape) or (1,))
        if not isinstance(got, Value):
            raise self.unsupported(node, f"operand {arg!r} is not a tensor")
        return got

    def value(self, node: fx.Node, arg: Any) -> Value:
        """The operand as dense row-major memory (copied if it is a strided view)."""
        return self.dense(node, self.view(node, arg))

    def dense(self, node: fx.Node, v: Value) -> Value:
        if v.is_dense:
            return v
        if v.dense_copy is None:
            out = Storage(numel(v.shape), Role.SCRATCH, v.shape, dtype=v.storage.dtype)
            self.calls.append(self.copy_call(v, out, dense_strides(v.shape), 0, node))
            v.dense_copy = Value(out, v.shape)
        return v.dense_copy

    def copy_call(
        self,
        src: Value,
        dst: Storage,
        dst_strides: tuple[int, ...],
        dst_offset: int,
        node: fx.Node | None = None,
    ) -> Call:
        """A strided_copy of the view `src` into `dst` at (dst_strides, offset)."""
        x_strides, x_offset = src.layout()
        shape, (xs, ys) = collapse(src.shape, x_strides, dst_strides)
        if len(shape) > COPY_DIMS:
            raise UnsupportedOp(
                f"a copy of a {len(shape)}-D strided view (strided_copy takes "
                f"{COPY_DIMS})" + (f" at {where(node)}" if node is not None else "")
            )
        pad = COPY_DIMS - len(shape)
        params = {
            "shape": (1,) * pad + shape,
            "x_strides": (0,) * pad + xs,
            "x_offset": x_offset,
            "y_strides": (0,) * pad + ys,
            "y_offset": dst_offset,
        }
        site = where(node) if node is not None else ""
        return Call("strided_copy", {"x": src.storage, "y": dst}, params, site)

    def const(self, node: fx.Node, arg: Any, what: str) -> Const:
        got = self.env.get(arg) if isinstance(arg, fx.Node) else None
        if not isinstance(got, Const) or not isinstance(got.value, torch.Tensor):
            raise self.unsupported(node, f"its {what} must be a constant tensor")
        return got

    def weight(self, const: Const) -> Storage:
        """The weight storage holding `const` (one per constant)."""
        if const not in self._weights:
            self._weights[const] = self.new_weight(const.value, const.origin)
        return self._weights[const]

    def new_weight(self, tensor: torch.Tensor, origin: str) -> Storage:
        dtype = DTYPE_NAME.get(tensor.dtype)
        if dtype not in INPUT_DTYPES:
            raise UnsupportedOp(
                f"weight {origin!r} is {tensor.dtype}; reefd lowers "
                f"{' and '.join(INPUT_DTYPES)} only"
            )
        name, i = f"w:{origin}", 1
        while name in self.weight_tensors:
            name, i = f"w:{origin}#{i}", i + 1
        shape = tuple(tensor.shape) or (1,)
        tensor = tensor.detach().contiguous().reshape(shape)
        self.weight_tensors[name] = tensor
        return Storage(tensor.numel(), Role.WEIGHT, shape, name, tensor, dtype)

    def emit(
        self,
        node: fx.Node,
        kernel: str,
        args: dict[str, Storage],
        params: dict[str, Any],
        shape: tuple[int, ...] | None = None,
    ) -> Value:
        """Append a call writing a new float32 scratch storage shaped like `node`."""
        spec = catalog.get(kernel)
        for op, storage in args.items():
            if storage.dtype not in spec.operand(op).dtypes:
                raise self.unsupported(
                    node,
                    f"{kernel} takes {op} as {spec.operand(op).dtypes}, "
                    f"not {storage.dtype}",
                )
        shape = shape or node_shape(node)
        out = Storage(numel(shape), Role.SCRATCH, shape)
        call = Call(kernel, {**args, "y": out}, params, where(node))
        self.calls.append(call)
        return Value(out, shape, call)

    def unsupported(self, node: fx.Node, reason: str = "") -> UnsupportedOp:
        shapes = [
            list(v.shape) if isinstance(v := n.meta.get("val"), torch.Tensor) else "?"
            for n in node.all_input_nodes
        ]
        op = str(node.target) if node.op == "call_function" else node.op
        why = f" ({reason})" if reason else ""
        site = where(node) or "no source location recorded"
        return UnsupportedOp(
            f"{op} is not supported by the reefd kernel catalog{why}; "
            f"input shapes {shapes}; at {site}"
        )

    # -- buffer assignment -----------------------------------------------------

    def finish(self, name: str, reuse_scratch: bool) -> KernelGraph:
        slots = _assign_scratch(self.calls, reuse_scratch)
        weights: dict[str, Storage] = {}
        for call in self.calls:
            for s in call.args.values():
                if s.role is Role.WEIGHT:
                    weights.setdefault(s.name, s)
        buffers = [
            *(Buffer(s.name, s.dtype, s.shape, Role.INPUT) for s in self.inputs),
            *(Buffer(s.name, s.dtype, s.shape, Role.WEIGHT) for s in weights.values()),
            *(Buffer(n, dtype, (size,), Role.SCRATCH) for n, dtype, size in slots),
            *(Buffer(s.name, s.dtype, s.shape, Role.OUTPUT) for s in self.outputs),
        ]
        calls = tuple(
            KernelCall(
                c.kernel, {op: s.name for op, s in c.args.items()}, c.params, c.where
            )
            for c in self.calls
        )
        return KernelGraph(name, tuple(buffers), calls)


def _assign_scratch(calls: list[Call], reuse: bool) -> list[tuple[str, str, int]]:
    """Give every scratch storage a slot; returns the slots as (name, dtype, numel).

    A storage is live from its first write to its last use (read or write: a
    concatenation is written by several calls). With `reuse`, storages share a
    slot when their lifetimes do not overlap, assigned greedily by size (the
    largest first, each into the smallest slot it can share, else a new slot;
    the "greedy by size" planner for shared objects of Pisarchyk and Lee, 2020).
    An in-place kernel's output may also take the slot of an input it reads
    element for element whose life ends at that call.
    """
    first: dict[Storage, int] = {}
    last: dict[Storage, int] = {}
    for i, call in enumerate(calls):
        for st in call.args.values():
            if st.role is Role.SCRATCH:
                first.setdefault(st, i)
                last[st] = i
    handover: set[tuple[Storage, Storage]] = set()
    for i, call in enumerate(calls):
        out = call.args["y"]
        if out in first and first[out] == i and catalog.get(call.kernel).inplace_ok:
            for st in _elementwise_inputs(call):
                if st in last and last[st] == i:
                    handover.add((st, out))

    def apart(a: Storage, b: Storage) -> bool:
        if last[a] < first[b] or last[b] < first[a]:
            return True
        return (a, b) in handover or (b, a) in handover

    slots: list[list[Storage]] = []
    slot_of: dict[Storage, int] = {}
    for st in sorted(first, key=lambda x: (-x.numel, first[x])):
        fits = [
            j
            for j, members in enumerate(slots)
            if reuse
            and members[0].dtype == st.dtype
            and all(apart(st, other) for other in members)
        ]
        if fits:
            j = min(fits, key=lambda j: slots[j][0].numel)
            slots[j].append(st)
        else:
            j = len(slots)
            slots.append([st])
        slot_of[st] = j
    order = sorted(range(len(slots)), key=lambda j: min(first[m] for m in slots[j]))
    names = {j: f"s{k}" for k, j in enumerate(order)}
    for st, j in slot_of.items():
        st.name = names[j]
    return [(names[j], slots[j][0].dtype, slots[j][0].numel) for j in order]


def _elementwise_inputs(call: Call) -> set[Storage]:
    """Inputs of an in-place kernel viewed exactly like its output `y`: only
    these may hand their slot to y (graph.validate checks the same rule)."""
    spec = catalog.get(call.kernel)
    shapes = spec.shapes(spec.with_defaults(call.params))
    out = call.args["y"]
    return {
        s
        for op, s in call.args.items()
        if op != "y" and s.dtype == out.dtype and shapes[op] == shapes["y"]
    }


_TRANSPOSES = (
    torch.ops.aten.t.default,
    torch.ops.aten.permute.default,
    torch.ops.aten.transpose.int,
)


def _is_transpose_2d(node: fx.Node) -> bool:
    """Whether the node swaps the two dims of a 2-D tensor."""
    if node.meta["val"].dim() != 2 or node.target not in _TRANSPOSES:
        return False
    if node.target is torch.ops.aten.permute.default:
        return [d % 2 for d in node.args[1]] == [1, 0]
    if node.target is torch.ops.aten.transpose.int:
        return node.args[1] % 2 != node.args[2] % 2
    return True
