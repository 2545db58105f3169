"""Registry: the engine's record of connected clients and their loaded models.

Pure bookkeeping (no device calls): who owns which model, which tasks use it,
and when a model may be unloaded (no task of it still holds device memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reefd.batching import BatchRule, at_batch, batch_of
from reefd.errors import RequestError, UnknownModel
from reefd.graph import KernelGraph
from reefd.scheduler.task import Priority


@dataclass
class ModelEntry:
    model_id: int
    client_id: int
    name: str
    graph: KernelGraph
    handle: Any
    priority: Priority
    slo_ms: float | None
    live_tasks: int = 0
    closing: bool = False
    done: int = 0
    batch: BatchRule | None = None
    """Set when the model serves any batch up to `batch.max_batch`."""
    profile_key: str = ""
    """The registered graph's key in profiles (reefd.profiler.identity)."""
    _by_batch: dict[int, KernelGraph] = field(default_factory=dict, repr=False)

    def graph_for(self, input_shapes: list[tuple[int, ...]]) -> KernelGraph:
        """The graph to run for inputs of these shapes (a fixed-batch model has
        one; a dynamic-batch one has one per batch size, made once)."""
        if self.batch is None:
            return self.graph
        batch = batch_of(self.graph, self.batch, input_shapes)
        if batch not in self._by_batch:
            self._by_batch[batch] = at_batch(self.graph, batch, self.batch)
        return self._by_batch[batch]


@dataclass
class ClientEntry:
    client_id: int
    name: str
    pid: int
    models: set[int] = field(default_factory=set)
    live_tasks: dict[int, int] = field(default_factory=dict)  # req -> task_id
    done: int = 0
    failed: int = 0
    cancelled: int = 0


class Registry:
    def __init__(self, max_models_per_client: int, max_queued_per_client: int) -> None:
        self.clients: dict[int, ClientEntry] = {}
        self.models: dict[int, ModelEntry] = {}
        self._max_models = max_models_per_client
        self._max_queued = max_queued_per_client
        self._next_model_id = 1

    def add_client(self, client_id: int, name: str, pid: int) -> ClientEntry:
        entry = ClientEntry(client_id, name, pid)
        self.clients[client_id] = entry
        return entry

    def client(self, client_id: int) -> ClientEntry:
        entry = self.clients.get(client_id)
        if entry is None:
            raise RequestError(
                f"client {client_id} is not connected (send HELLO first)"
            )
        return entry

    def check_can_register(self, client_id: int) -> None:
        client = self.client(client_id)
        if len(client.models) >= self._max_models:
            raise RequestError(
                f"client already has {len(client.models)} models registered "
                f"(max_models_per_client={self._max_models}); unregister one first"
            )

    def add_model(
        self,
        client_id: int,
        name: str,
        graph: KernelGraph,
        handle: Any,
        priority: Priority,
        slo_ms: float | None,
        batch: BatchRule | None = None,
        profile_key: str = "",
    ) -> ModelEntry:
        model_id = self._next_model_id
        self._next_model_id += 1
        entry = ModelEntry(
            model_id,
            client_id,
            name,
            graph,
            handle,
            priority,
            slo_ms,
            batch=batch,
            profile_key=profile_key,
        )
        self.models[model_id] = entry
        self.clients[client_id].models.add(model_id)
        return entry

    def model_for(self, client_id: int, model_id: int) -> ModelEntry:
        """The client's own, open model, else UnknownModel."""
        entry = self.models.get(model_id)
        if entry is None or entry.client_id != client_id or entry.closing:
            raise UnknownModel(f"model {model_id} is not registered by this client")
        return entry

    def check_can_queue(self, client_id: int, req: int) -> None:
        client = self.client(client_id)
        if req in client.live_tasks:
            raise RequestError(f"request id {req} is already in flight for this client")
        if len(client.live_tasks) >= self._max_queued:
            raise RequestError(
                f"client has {len(client.live_tasks)} requests in flight "
                f"(max_queued_per_client={self._max_queued})"
            )

    def unloadable(self, model_id: int) -> bool:
        entry = self.models[model_id]
        return entry.closing and entry.live_tasks == 0

    def remove_model(self, model_id: int) -> ModelEntry:
        entry = self.models.pop(model_id)
        client = self.clients.get(entry.client_id)
        if client is not None:
            client.models.discard(model_id)
        return entry
