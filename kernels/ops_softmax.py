"""The row softmax kernel: `softmax` over the last dim of a `[rows, cols]` view.

The reference computes into a temporary, so `y` may alias `x`. The CUDA bodies
are in kernels/src/softmax.cu: a warp per row for rows up to 1024 long (8 rows
per virtual block), else a CTA per row. Imports torch and this package's spec and
catalog only.
"""

from __future__ import annotations

import math

import torch

from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive


def _softmax_shapes(p: Params) -> dict[str, Shape]:
    positive("softmax", rows=p["rows"], cols=p["cols"])
    return {"x": (p["rows"], p["cols"]), "y": (p["rows"], p["cols"])}


def _softmax_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(torch.softmax(t["x"], dim=-1))


def _softmax_flops(p: Params) -> int:
    # max, subtract, exp, sum and divide: about five operations per element.
    return 5 * p["rows"] * p["cols"]


WARP_MAX_COLS = 1024
"""Longest row a warp holds in registers (32 lanes x 32 values)."""
BLOCK_MAX_COLS = 4096
"""Longest row a CTA holds in registers (256 threads x 16 values)."""
WARP_ROWS_PER_VB = 8


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, x - 1).bit_length()


def _softmax_variant(p: Params) -> str:
    cols = p["cols"]
    if cols <= WARP_MAX_COLS:
        return f"softmax_warp_body<{_pow2_at_least(math.ceil(cols / 32))}>"
    if cols <= BLOCK_MAX_COLS:
        return f"softmax_block_body<{8 if cols <= 2048 else 16}>"
    return "softmax_online_body"


def _softmax_vb_count(p: Params) -> int:
    _softmax_shapes(p)
    if p["cols"] <= WARP_MAX_COLS:
        return math.ceil(p["rows"] / WARP_ROWS_PER_VB)
    return p["rows"]


def _softmax_smem_bytes(p: Params) -> int:
    return 0 if p["cols"] <= WARP_MAX_COLS else 16 * 4


SAMPLE_PARAMS: list[dict] = [
    # ViT-B/16 attention probabilities at batch 8: 8 x 12 heads x 197 rows.
    {"rows": 8 * 12 * 197, "cols": 197},
    # ImageNet classifier output at batch 64.
    {"rows": 64, "cols": 1000},
    # A long row (a language-model vocabulary).
    {"rows": 16, "cols": 32000},
]

softmax = catalog.register(
    KernelSpec(
        name="softmax",
        summary="y = softmax(x) over the last dim of [rows, cols]; y may alias x",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(Param("rows", "int"), Param("cols", "int")),
        shapes=_softmax_shapes,
        reference=_softmax_reference,
        flops=_softmax_flops,
        inplace_ok=True,
        cta_threads=256,
        source="softmax.cu",
        variant=_softmax_variant,
        vb_count=_softmax_vb_count,
        smem_bytes=_softmax_smem_bytes,
    )
)
