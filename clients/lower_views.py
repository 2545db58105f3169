"""View handlers: permute, transpose, expand, select, slice and reshape-like ops
become new strided Values of the same storage, with no kernel.

A reshape of a view whose layout cannot express the new shape copies it first
(once); a view that swaps the last two dims (attention's K^T) is copied in the
un-swapped order so bmm can still read it transposed in place. `view_strides`
is torch's `view` rule. Imports torch and the lowering modules.
"""

from __future__ import annotations

import torch
from torch import fx

from reefd.clients.lower import Lowerer
from reefd.clients.lower_ir import Value, bound, dense_strides, node_shape, numel

aten = torch.ops.aten


def on_permute(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.view(node, node.args[0])
    return permuted(x, [d % len(x.shape) for d in node.args[1]])


def on_transpose(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.view(node, node.args[0])
    rank = len(x.shape)
    order = list(range(rank))
    if node.target is aten.transpose.int:
        d0, d1 = node.args[1] % rank, node.args[2] % rank
    else:  # aten.t: the two dims of a 2-D tensor (a 1-D one is unchanged)
        d0, d1 = 0, rank - 1
    order[d0], order[d1] = order[d1], order[d0]
    return permuted(x, order)


def permuted(x: Value, order: list[int]) -> Value:
    """The view `x` with its dims in `order` (no kernel)."""
    strides, offset = x.layout()
    return Value(
        x.storage,
        tuple(x.shape[d] for d in order),
        strides=tuple(strides[d] for d in order),
        offset=offset,
    )


def on_expand(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.view(node, node.args[0])
    shape = node_shape(node)
    if shape == x.shape:  # matmul's decomposition expands to the same shape
        return on_reshape(lw, node)
    lead = len(shape) - len(x.shape)
    strides, offset = x.layout()
    new = []
    for i, size in enumerate(shape):
        j = i - lead
        if j < 0 or (x.shape[j] == 1 and size != 1):
            new.append(0)
        else:
            new.append(strides[j])
    return Value(x.storage, shape, strides=tuple(new), offset=offset)


def on_select(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.view(node, node.args[0])
    dim = node.args[1] % len(x.shape)
    index = node.args[2] % x.shape[dim]
    strides, offset = x.layout()
    return Value(
        x.storage,
        x.shape[:dim] + x.shape[dim + 1 :],
        strides=strides[:dim] + strides[dim + 1 :],
        offset=offset + index * strides[dim],
    )


def on_slice(lw: Lowerer, node: fx.Node) -> Value:
    a = bound(node)
    x = lw.view(node, a["self"])
    dim = a["dim"] % len(x.shape)
    start, _, step = slice(a["start"], a["end"], a["step"]).indices(x.shape[dim])
    strides, offset = x.layout()
    shape = list(x.shape)
    shape[dim] = node_shape(node)[dim]
    new = list(strides)
    new[dim] = strides[dim] * step
    return Value(
        x.storage,
        tuple(shape),
        strides=tuple(new),
        offset=offset + start * strides[dim],
    )


def on_reshape(lw: Lowerer, node: fx.Node) -> Value:
    """view, reshape, flatten, (un)squeeze, clone, ...: the same memory under a
    new shape when the layout allows it, else a copy first.

    The producer's call stays attached (for epilogue fusion) when this view is
    its only reader. A view that swaps the last two dims (attention's K^T) is
    copied in the un-swapped order, so the result is still a transposed view
    that bmm reads in place.
    """
    if node.target is aten.dropout.default and node.args[2]:
        raise lw.unsupported(node, "dropout in training mode")
    src = node.args[0]
    x = lw.view(node, src)
    shape = node_shape(node)
    if x.is_dense:
        call = x.call if len(src.users) == 1 else None
        return Value(x.storage, shape, call)
    strides, offset = x.layout()
    new = view_strides(x.shape, strides, shape)
    if new is not None:
        return Value(x.storage, shape, strides=new, offset=offset)
    swapped = _unswapped_copy(lw, node, x)
    if swapped is not None:
        new = view_strides(swapped.shape, swapped.layout()[0], shape)
        if new is not None:
            return Value(swapped.storage, shape, strides=new)
    return Value(lw.dense(node, x).storage, shape)


def _unswapped_copy(lw: Lowerer, node: fx.Node, x: Value) -> Value | None:
    """x as a transposed view of a dense copy of x.transpose(-1, -2), when x's
    last two dims are in swapped memory order; else None."""
    if len(x.shape) < 2:
        return None
    strides, offset = x.layout()
    if not strides[-1] > strides[-2] > 0:
        return None
    order = list(range(len(x.shape)))
    order[-2], order[-1] = order[-1], order[-2]
    dense = lw.dense(node, permuted(x, order))
    back = dense_strides(dense.shape)
    return Value(
        dense.storage,
        x.shape,
        strides=tuple(back[d] for d in order),
    )


def view_strides(
    old: tuple[int, ...], strides: tuple[int, ...], new: tuple[int, ...]
) -> tuple[int, ...] | None:
    """Strides that show a view (old, strides) as shape `new` without a copy, or
    None (the rule torch's `view` follows: each run of new dims must cover a run
    of old dims that is contiguous within itself)."""
    if numel(old) != numel(new):
        return None
    if numel(new) == 0:
        return dense_strides(new)
    old_dims = [(s, st) for s, st in zip(old, strides, strict=True) if s != 1]
    out: list[int] = []
    i = 0
    for size in new:
        if size == 1:
            out.append(0)
            continue
        if i >= len(old_dims):
            return None
        # gather old dims until their product reaches `size`, contiguously
        prod, j = old_dims[i][0], i
        while prod < size and j + 1 < len(old_dims):
            if old_dims[j][1] != old_dims[j + 1][1] * old_dims[j + 1][0]:
                return None
            j += 1
            prod *= old_dims[j][0]
        if prod == size:
            out.append(old_dims[j][1])
            i = j + 1
            continue
        if prod > size and j == i and old_dims[i][0] % size == 0:
            # split one old dim: this new dim takes its outer part
            rest = old_dims[i][0] // size
            out.append(old_dims[i][1] * rest)
            old_dims[i] = (rest, old_dims[i][1])
            continue
        return None
    return tuple(out) if i == len(old_dims) else None
