"""The `reef` torch.compile backend: `torch.compile(model, backend="reef")`.

Registered through the `torch_dynamo_backends` entry point. Dynamo hands over an
FX graph whose placeholders include the module's parameters and buffers; those
become the model's weights (sent once), and only the forward's own arguments are
sent per call. Options (`options={...}`): priority ("rt" | "be"), slo_ms, socket,
name, fallback (run the graph locally, with one warning, when an op has no
catalog kernel).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn

from reefd.clients.remote import compile, shared_client
from reefd.errors import UnsupportedOp

OPTIONS = ("priority", "slo_ms", "socket", "name", "fallback")


class _Frozen(nn.Module):
    """A dynamo graph with its parameter/buffer placeholders bound as buffers."""

    def __init__(self, gm: fx.GraphModule, constants: dict[int, torch.Tensor], n: int):
        super().__init__()
        self.gm = gm
        self._n = n
        self._const = set(constants)
        for i, tensor in constants.items():
            self.register_buffer(f"c{i}", tensor.detach().clone())

    def forward(self, *inputs: torch.Tensor) -> Any:
        it = iter(inputs)
        args = [
            getattr(self, f"c{i}") if i in self._const else next(it)
            for i in range(self._n)
        ]
        return self.gm(*args)


def _is_user_input(node: fx.Node) -> bool:
    """True for the forward's own arguments; params, buffers and globals are not."""
    grapharg = node.meta.get("grapharg")
    if grapharg is None:
        return True
    source = grapharg.source
    return type(source).__name__ == "LocalSource"


def reef_backend(
    gm: fx.GraphModule, example_inputs: list[torch.Tensor], options: dict | None = None
):
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown reef backend options {unknown}; known: {list(OPTIONS)}"
        )
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    is_input = [_is_user_input(n) for n in placeholders]
    constants = {i: t for i, t in enumerate(example_inputs) if not is_input[i]}
    inputs = tuple(t for i, t in enumerate(example_inputs) if is_input[i])
    input_idx = [i for i, flag in enumerate(is_input) if flag]
    module = _Frozen(gm, constants, len(example_inputs)).eval()
    try:
        remote = compile(
            module,
            inputs,
            priority=opts.get("priority", "be"),
            slo_ms=opts.get("slo_ms"),
            client=shared_client(opts.get("socket")),
            name=opts.get("name", "torch.compile graph"),
        )
    except UnsupportedOp as exc:
        if not opts.get("fallback"):
            raise
        warnings.warn(f"reef: running this graph locally: {exc}", stacklevel=2)
        return gm.forward

    def run(*args: torch.Tensor) -> Any:
        out = remote(*(args[i] for i in input_idx))
        return out if isinstance(out, tuple) else (out,)

    return run
