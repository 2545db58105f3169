"""Buffer memory on the host: flat torch tensors and the views kernels see.

Every buffer of a graph is one flat, contiguous tensor; a kernel operand is a
contiguous view of the first `prod(shape)` elements of its buffer, with the shape
the kernel's shape rule gives. This is how views, reshapes and flattens alias one
buffer without copies. Used by the cpu backend and the reference runner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from reefd.graph import Buffer, KernelCall, KernelGraph, Role
from reefd.kernels import catalog
from reefd.kernels.spec import TORCH_DTYPE


def flat_buffer(buf: Buffer) -> torch.Tensor:
    return torch.empty(buf.numel, dtype=TORCH_DTYPE[buf.dtype])


def as_flat(tensor: torch.Tensor, buf: Buffer) -> torch.Tensor:
    """Check a client tensor against its buffer and return it flat and contiguous."""
    want = TORCH_DTYPE[buf.dtype]
    if tensor.dtype != want:
        raise ValueError(f"{buf.name!r} is {buf.dtype}, got {tensor.dtype}")
    if tuple(tensor.shape) != buf.shape:
        raise ValueError(
            f"{buf.name!r} has shape {list(buf.shape)}, got {list(tensor.shape)}"
        )
    return tensor.reshape(-1).contiguous()


def run_call(call: KernelCall, flats: Mapping[str, torch.Tensor]) -> None:
    """Run one kernel call through its torch reference on the given flat buffers."""
    spec = catalog.get(call.kernel)
    params = spec.with_defaults(call.params)
    shapes = spec.shapes(params)
    views = {
        op: flats[buf][: math.prod(shapes[op])].view(shapes[op])
        for op, buf in call.args.items()
    }
    spec.reference(views, params)


def run_graph(
    graph: KernelGraph,
    weights: Mapping[str, torch.Tensor],
    inputs: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Execute a whole graph with the catalog references; returns outputs by name.

    The ground truth the backends are tested against. Weights and inputs are keyed
    by buffer name and must match the buffers' dtypes and shapes.
    """
    flats: dict[str, torch.Tensor] = {}
    for buf in graph.buffers:
        if buf.role is Role.WEIGHT:
            flats[buf.name] = as_flat(weights[buf.name], buf)
        elif buf.role is Role.INPUT:
            flats[buf.name] = as_flat(inputs[buf.name], buf)
        else:
            flats[buf.name] = flat_buffer(buf)
    for call in graph.calls:
        run_call(call, flats)
    return {b.name: flats[b.name].view(b.shape) for b in graph.outputs}
