"""The normalization kernel: `layer_norm` over the last dim of a `[rows, cols]` view.

Owns the layer-norm shape rule, its torch reference (torch's semantics: biased
variance, `1 / sqrt(var + eps)`, optional elementwise weight and bias) and the
choice of its CUDA body in kernels/src/norm.cu: a warp per row for rows up to
1024 long (8 rows per virtual block), else a CTA per row. `y` may alias `x`.
Imports torch and this package's spec and catalog only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

WARP_MAX_COLS = 1024
"""Longest row a warp holds in registers (32 lanes x 32 values)."""
WARP_ROWS_PER_VB = 8
"""Rows per virtual block of the warp body (one per warp)."""
WARP_VALUES = (1, 2, 4, 8, 12, 16, 24, 32)
"""Values per lane the warp body is instantiated for (768 columns: exactly 24)."""
BLOCK_SMEM_BYTES = 8 * 4
"""The CTA body's reduction scratch: one float per warp."""


def _layer_norm_shapes(p: Params) -> dict[str, Shape]:
    positive("layer_norm", rows=p["rows"], cols=p["cols"])
    rows, cols = p["rows"], p["cols"]
    return {"x": (rows, cols), "weight": (cols,), "bias": (cols,), "y": (rows, cols)}


def _layer_norm_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = F.layer_norm(t["x"], (p["cols"],), t.get("weight"), t.get("bias"), p["eps"])
    t["y"].copy_(out)


def _layer_norm_flops(p: Params) -> int:
    # Sum, subtract, square-accumulate, then scale, weight and bias per element.
    return 7 * p["rows"] * p["cols"]


def _values_per_lane(cols: int) -> int:
    need = math.ceil(cols / 32)
    return next(v for v in WARP_VALUES if v >= need)


def _layer_norm_variant(p: Params) -> str:
    if p["cols"] <= WARP_MAX_COLS:
        return f"layer_norm_warp_body<{_values_per_lane(p['cols'])}>"
    return "layer_norm_block_body"


def _layer_norm_vb_count(p: Params) -> int:
    _layer_norm_shapes(p)
    if p["cols"] <= WARP_MAX_COLS:
        return math.ceil(p["rows"] / WARP_ROWS_PER_VB)
    return p["rows"]


def _layer_norm_smem_bytes(p: Params) -> int:
    return 0 if p["cols"] <= WARP_MAX_COLS else BLOCK_SMEM_BYTES


SAMPLE_PARAMS: list[dict] = [
    # DistilBERT, batch 8 x seq 128, hidden 768.
    {"rows": 8 * 128, "cols": 768},
    # ViT-B/16, batch 8 x 197 tokens, hidden 768.
    {"rows": 8 * 197, "cols": 768},
    # A short odd row (a warp body with one value per lane).
    {"rows": 37, "cols": 19},
    # A row longer than a warp holds: the CTA body (a 4096-wide hidden state).
    {"rows": 8 * 128, "cols": 4096},
]

layer_norm = catalog.register(
    KernelSpec(
        name="layer_norm",
        summary=(
            "y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim of "
            "[rows, cols] (biased var; weight and bias optional); y may alias x"
        ),
        operands=(
            Operand("x", "read"),
            Operand("weight", "read", optional=True),
            Operand("bias", "read", optional=True),
            Operand("y", "write"),
        ),
        params=(
            Param("rows", "int"),
            Param("cols", "int"),
            Param("eps", "float", required=False, default=1e-5),
        ),
        shapes=_layer_norm_shapes,
        reference=_layer_norm_reference,
        flops=_layer_norm_flops,
        inplace_ok=True,
        cta_threads=256,
        source="norm.cu",
        variant=_layer_norm_variant,
        vb_count=_layer_norm_vb_count,
        smem_bytes=_layer_norm_smem_bytes,
    )
)
