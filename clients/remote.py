"""compile(): lower a torch module, register it on a daemon, call it like the module.

The returned RemoteModel keeps the module's calling convention: positional tensor
inputs, one tensor out (or a tuple when the module returns several).
"""

from __future__ import annotations

import atexit
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import torch

from reefd.batching import at_batch, batch_of
from reefd.clients.client import Client
from reefd.clients.lower import Lowered, lower
from reefd.errors import RequestError, UnsupportedOp


class LocalModel:
    """What compile(fallback=True) returns when the model cannot be lowered."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __call__(self, *inputs: torch.Tensor) -> Any:
        with torch.no_grad():
            return self.model(*inputs)

    def close(self) -> None:
        pass


_SHARED: dict[str, Client] = {}
_SHARED_LOCK = threading.Lock()


def shared_client(socket: str | None = None) -> Client:
    """One Client per daemon address for the whole process (closed at exit)."""
    from reefd.clients.client import resolve_socket

    path = resolve_socket(socket)
    with _SHARED_LOCK:
        client = _SHARED.get(path)
        if client is None:
            client = _SHARED[path] = Client(path)
            atexit.register(client.close)
        return client


class RemoteModel:
    """A registered model: call it with the same inputs as the torch module."""

    def __init__(
        self,
        client: Client,
        model_id: int,
        lowered: Lowered,
        single: bool,
        owns_client: bool,
    ) -> None:
        self.client = client
        self.model_id = model_id
        self.lowered = lowered
        self._single = single
        self._owns_client = owns_client

    def __call__(self, *inputs: torch.Tensor) -> Any:
        return self._shape(self.client.infer(self.model_id, self._check(inputs)))

    def submit(self, *inputs: torch.Tensor) -> Future:
        """Send a request without waiting; pass the Future to `result`."""
        return self.client.infer_async(self.model_id, self._check(inputs))

    def result(self, future: Future, timeout_s: float | None = None) -> Any:
        return self._shape(self.client.wait(future, timeout_s))

    def close(self) -> None:
        """Unregister the model (and close the client if compile opened it)."""
        if self._owns_client:
            self.client.close()
        else:
            self.client.unregister(self.model_id)

    def _check(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        graph, rule = self.lowered.graph, self.lowered.batch
        buffers = graph.inputs
        if len(inputs) != len(buffers):
            raise RequestError(f"model takes {len(buffers)} inputs, got {len(inputs)}")
        if rule is not None:
            batch = batch_of(graph, rule, [tuple(t.shape) for t in inputs])
            buffers = at_batch(graph, batch, rule).inputs
        for i, (t, buf) in enumerate(zip(inputs, buffers, strict=True)):
            if tuple(t.shape) != buf.shape:
                upto = f" (batch up to {rule.max_batch})" if rule else ""
                raise RequestError(
                    f"input {i} has shape {list(t.shape)}; the model was compiled for "
                    f"{list(buf.shape)}{upto}"
                )
        return list(inputs)

    def _shape(self, outputs: list[torch.Tensor]) -> Any:
        return outputs[0] if self._single else tuple(outputs)


def compile(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    priority: str = "be",
    slo_ms: float | None = None,
    client: Client | None = None,
    socket: str | None = None,
    name: str | None = None,
    fallback: bool = False,
    max_batch: int | None = None,
) -> RemoteModel | LocalModel:
    """Lower `model` with torch.export, register it, and return a callable for it.

    `priority` is "rt" (latency-critical, ordered by deadline = arrival + slo_ms)
    or "be" (best effort). With `max_batch`, dim 0 of the inputs is a batch and
    the model accepts any batch from 1 to `max_batch` without re-registering.
    Ops the kernel catalog lacks raise UnsupportedOp, or with `fallback=True`
    the model runs locally after one warning.
    """
    if priority not in ("rt", "be"):
        raise ValueError(f"priority must be 'rt' or 'be', got {priority!r}")
    try:
        lowered = lower(model, tuple(example_inputs), name=name, max_batch=max_batch)
    except UnsupportedOp as exc:
        if not fallback:
            raise
        warnings.warn(f"reef: {type(model).__name__} runs locally: {exc}", stacklevel=2)
        return LocalModel(model)
    with torch.no_grad():
        eager = model.eval()(*example_inputs)
    single = isinstance(eager, torch.Tensor)
    owns = client is None
    if client is None:
        client = Client(socket, name=name or type(model).__name__)
    model_id = client.register(
        lowered.graph,
        lowered.weights,
        priority=priority,
        slo_ms=slo_ms,
        name=name or lowered.graph.name,
        batch=lowered.batch,
    )
    return RemoteModel(client, model_id, lowered, single, owns)
