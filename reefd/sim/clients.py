"""DISB-style simulator clients: which model, which priority, how requests
arrive. Owns `ClientSpec` and its validation; pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reefd.graph import KernelGraph
from reefd.scheduler.task import Priority

Arrival = Literal["closed", "uniform", "poisson"]


@dataclass(frozen=True)
class ClientSpec:
    """One DISB client: a model, its priority and how requests arrive."""

    model_name: str
    graph: KernelGraph
    priority: Priority
    arrival: Arrival = "closed"
    rate_per_s: float | None = None
    """Requests per second of an open-loop client (uniform or poisson)."""
    slo_ms: float | None = None
    """Latency objective; RT clients need one (it sets their deadline)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        if self.arrival not in ("closed", "uniform", "poisson"):
            raise ValueError(
                f"{self.model_name}: arrival={self.arrival!r}; choose closed, "
                "uniform or poisson"
            )
        if self.arrival != "closed" and not (self.rate_per_s or 0) > 0:
            raise ValueError(
                f"{self.model_name}: {self.arrival} arrivals need rate_per_s > 0, "
                f"got {self.rate_per_s}"
            )
        if self.priority is Priority.RT and not (self.slo_ms or 0) > 0:
            raise ValueError(
                f"{self.model_name}: an RT client needs slo_ms > 0, got {self.slo_ms}"
            )
