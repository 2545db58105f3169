"""Co-run slowdown for the simulator from the trained interference model.

Owns `ModelSlowdown`, a `Slowdown` hook: an RT block that runs beside BE work
takes the predicted RT slowdown of its task beside the worst BE task there;
a BE block beside RT work takes 1 / the predicted BE throughput ratio.
Blocks beside work of their own kind, and pairs the model does not know, run
at solo speed (a slowdown below 1 is taken as 1). The model predicts whole
tasks side by side; applying it block by block, only while the two actually
overlap, is this hook's approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reefd.sim.records import Running


class _Table(Protocol):
    def lookup(self, rt_key: str, be_key: str): ...  # -> Prediction | None


class ModelSlowdown:
    """The interference model's predictions as the simulator's hook."""

    __name__ = "interference model"

    def __init__(self, table: _Table) -> None:
        self._table = table

    def __call__(self, own: Running, co_running: Sequence[Running]) -> float:
        worst = 1.0
        for other in co_running:
            if other.rt == own.rt:
                continue
            if own.rt:
                found = self._table.lookup(own.profile_key, other.profile_key)
                factor = None if found is None else found.rt_slowdown
            else:
                found = self._table.lookup(other.profile_key, own.profile_key)
                ratio = None if found is None else found.be_ratio
                factor = None if not ratio or ratio <= 0 else 1.0 / ratio
            if factor is not None:
                worst = max(worst, factor)
        return worst
