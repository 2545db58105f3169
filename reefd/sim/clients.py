"""DISB-style simulator clients: which model, which priority, how requests
arrive. Owns `ClientSpec` and its validation; pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reefd.graph import KernelGraph
from reefd.scheduler.task import Priority

Arrival = Literal["closed", "uniform", "poisson", "trace"]


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
    trace_s: tuple[float, ...] = ()
    """A trace client's arrival offsets in seconds, sorted, each in
    [0, trace_period_s); looped every trace_period_s."""
    trace_period_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        if self.arrival not in ("closed", "uniform", "poisson", "trace"):
            raise ValueError(
                f"{self.model_name}: arrival={self.arrival!r}; choose closed, "
                "uniform, poisson or trace"
            )
        if self.arrival == "trace":
            self._check_trace()
        elif self.arrival != "closed" and not (self.rate_per_s or 0) > 0:
            raise ValueError(
                f"{self.model_name}: {self.arrival} arrivals need rate_per_s > 0, "
                f"got {self.rate_per_s}"
            )
        if self.priority is Priority.RT and not (self.slo_ms or 0) > 0:
            raise ValueError(
                f"{self.model_name}: an RT client needs slo_ms > 0, got {self.slo_ms}"
            )

    def _check_trace(self) -> None:
        period, xs = self.trace_period_s, self.trace_s
        if not xs or period is None or not period > 0:
            raise ValueError(
                f"{self.model_name}: trace arrivals need trace_s (non-empty) and "
                f"trace_period_s > 0, got {len(xs)} offsets, period {period}"
            )
        if list(xs) != sorted(xs) or xs[0] < 0 or xs[-1] >= period:
            raise ValueError(
                f"{self.model_name}: trace_s must be sorted and in [0, {period})"
            )

    @property
    def mean_rate_per_s(self) -> float | None:
        """Offered requests per second; None for a closed loop."""
        if self.arrival == "trace":
            assert self.trace_period_s
            return len(self.trace_s) / self.trace_period_s
        return self.rate_per_s
