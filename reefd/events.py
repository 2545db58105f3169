"""Events the server hands to the engine, one dataclass per client action.

The server has already decoded and validated the bytes; events carry parsed
values and raw tensor frames. `recv_us` is when the server received the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reefd.batching import BatchRule
from reefd.graph import KernelGraph
from reefd.scheduler.task import Priority


@dataclass(frozen=True)
class ClientHello:
    client_id: int
    req: int
    name: str
    pid: int


@dataclass(frozen=True)
class RegisterModel:
    client_id: int
    req: int
    graph: KernelGraph
    weights: dict[str, Any]
    priority: Priority
    slo_ms: float | None
    name: str
    digests: dict[str, str]
    """Weight buffer name -> content digest (weight_pool.digest)."""
    batch: BatchRule | None = None
    """Set for a dynamic-batch model (validated at every batch size)."""
    compiled: Any = field(default=None, repr=False)
    """What `Device.prepare` made on the register worker (None: nothing)."""
    profile_key: str = ""
    """The graph's key in profiles, hashed on the register worker."""


@dataclass(frozen=True)
class UnregisterModel:
    client_id: int
    req: int
    model_id: int


@dataclass(frozen=True)
class InferRequest:
    client_id: int
    req: int
    model_id: int
    inputs: list[tuple[str, tuple[int, ...]]]
    frames: list[Any] = field(repr=False)
    recv_us: int = 0


@dataclass(frozen=True)
class CancelRequest:
    client_id: int
    req: int
    target_req: int


@dataclass(frozen=True)
class StatusRequest:
    client_id: int
    req: int


@dataclass(frozen=True)
class ClientBye:
    client_id: int
    req: int


@dataclass(frozen=True)
class ClientGone:
    """The client died or went silent: cancel its work, free its models; no reply."""

    client_id: int
    reason: str


Event = (
    ClientHello
    | RegisterModel
    | UnregisterModel
    | InferRequest
    | CancelRequest
    | StatusRequest
    | ClientBye
    | ClientGone
)
