"""bench/coverage.py: the coverage row of a small model, and the eager-peak walk."""

from __future__ import annotations

import torch
from torch import nn

from bench.coverage import cover, table, torch_peak_bytes
from reefd.clients.lower import export


def test_row_of_a_reduced_densenet_keeps_scratch_near_torch_peak():
    row = cover("densenet201", 1, blocks=(2, 2), growth=8, image=64)
    assert not row.error
    assert row.kernels["strided_copy"] > 0  # its concatenations
    assert row.calls == sum(row.kernels.values())
    assert "aten.cat.default" in row.aten_ops
    assert row.torch_peak_bytes > 0
    assert row.scratch_bytes <= 1.5 * row.torch_peak_bytes
    assert "densenet201" in table([row])


class Chain(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(x)  # 64 floats
        b = a.view(8, 8)  # a view: no memory
        c = b * 2.0  # 64 floats; a dies after this
        return c + 1.0  # 64 floats


def test_peak_counts_live_results_and_not_views():
    ep = export(Chain(), (torch.randn(64),))
    assert torch_peak_bytes(ep) == 2 * 64 * 4
