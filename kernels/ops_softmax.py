"""The row softmax kernel: `softmax` over the last dim of a `[rows, cols]` view.

Optionally scaled and masked, as attention scores are: y[r] = softmax(x[r] *
scale + mask[r // mask_group]), the mask term only when `mask` is bound (a key
padding mask [batch, 1, 1, seq] serves every head and query of its batch row
with mask_group = heads * seq). The input is rounded as torch rounds
`x * scale + mask`: the product, then the sum (no fused multiply-add).
The reference computes into a temporary, so `y` may alias `x`. The CUDA bodies
are in kernels/src/softmax.cu: a warp per row for rows up to 1024 long (8 rows
per virtual block), else a CTA per row. Imports torch, reefd.errors and this
package's spec and catalog only.
"""

from __future__ import annotations

import math

import torch

from reefd.errors import GraphError
from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive


def _softmax_shapes(p: Params) -> dict[str, Shape]:
    rows, cols, group = p["rows"], p["cols"], p["mask_group"]
    positive("softmax", rows=rows, cols=cols, mask_group=group)
    if rows % group:
        raise GraphError(
            f"kernel 'softmax': mask_group={group} does not divide rows={rows}"
        )
    return {"x": (rows, cols), "mask": (rows // group, cols), "y": (rows, cols)}


def _softmax_input(t: dict[str, torch.Tensor], p: Params) -> torch.Tensor:
    """x * scale + mask (broadcast over groups of mask_group rows), two roundings.

    `scale` is rounded to float32 first, as the kernel receives it.
    """
    x = t["x"] * torch.tensor(p["scale"], dtype=torch.float32).item()
    mask = t.get("mask")
    if mask is None:
        return x
    rows, cols, group = p["rows"], p["cols"], p["mask_group"]
    return (x.view(rows // group, group, cols) + mask.unsqueeze(1)).view(rows, cols)


def _softmax_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(torch.softmax(_softmax_input(t, p), dim=-1))


def _softmax_flops(p: Params) -> int:
    # scale, mask, max, subtract, exp, sum and divide per element.
    return 7 * p["rows"] * p["cols"]


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
    # DistilBERT attention at batch 8 x seq 128: 12 heads, 1/sqrt(64) scale and
    # a key padding mask [8, 1, 1, 128] shared by the 12 x 128 rows of a sample.
    {"rows": 8 * 12 * 128, "cols": 128, "scale": 0.125, "mask_group": 12 * 128},
]

softmax = catalog.register(
    KernelSpec(
        name="softmax",
        summary=(
            "y = softmax(x * scale + mask[row // mask_group]) over the last dim of "
            "[rows, cols] (mask optional); y may alias x"
        ),
        operands=(
            Operand("x", "read"),
            Operand("mask", "read", optional=True),
            Operand("y", "write"),
        ),
        params=(
            Param("rows", "int"),
            Param("cols", "int"),
            Param("scale", "float", required=False, default=1.0),
            Param("mask_group", "int", required=False, default=1),
        ),
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
