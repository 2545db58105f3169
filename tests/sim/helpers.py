"""Hand-made graphs, costs and device shapes for the simulator tests."""

from __future__ import annotations

from collections.abc import Sequence

from reefd.graph import Buffer, KernelCall, KernelGraph, Role
from reefd.scheduler.padding import CallCost, DeviceShape


def graph(name: str, n_calls: int, numel: int = 1024) -> KernelGraph:
    """A graph of `n_calls` relu calls (only the call count matters here)."""
    buffers = (
        Buffer("x", "float32", (numel,), Role.INPUT),
        Buffer("y", "float32", (numel,), Role.OUTPUT),
    )
    call = KernelCall("relu", {"x": "x", "y": "y"}, {"numel": numel})
    return KernelGraph(name, buffers, (call,) * n_calls)


class TableCosts:
    """Costs given per graph name: every call of a graph gets the same cost,
    or a list gives one per call."""

    def __init__(self, table: dict[str, CallCost | Sequence[CallCost]]) -> None:
        self.table = table

    def costs(self, g: KernelGraph) -> tuple[CallCost, ...]:
        found = self.table[g.name]
        if isinstance(found, CallCost):
            return (found,) * len(g.calls)
        assert len(found) == len(g.calls)
        return tuple(found)


def occupancy(registers: int, smem_bytes: int) -> int:
    """A simple rule: 64 registers or fewer -> 4 CTAs per SM, else 2; shared
    memory above 64 KiB -> 1."""
    if smem_bytes > 64 * 1024:
        return 1
    return 4 if registers <= 64 else 2


SMALL_GPU = DeviceShape(sms=4, ctas_per_sm=occupancy)
"""4 SMs: 16 slots for a 32-register kernel, 8 for a 128-register one."""
