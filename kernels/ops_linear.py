"""The dense kernel: `linear` (y = x @ w.T + bias, optional activation epilogue).

Owns the linear shape rule, its torch reference, the choice of its CUDA body
(kernels/src/linear.cu) per shape and precision ("ieee": SIMT fp32; "tf32":
tensor cores, whose reference stays the float32 op), and `gemm_tile`, the tile
chooser that the implicit-GEMM conv and the tensor-core kernels share. Imports
torch, reefd.errors and this package's spec, catalog and act; ops_linear_tc (the
tensor-core tiles, which imports this module) only inside functions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from reefd.kernels import catalog
from reefd.kernels.act import ACTS, apply_act
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive


def _linear_shapes(p: Params) -> dict[str, Shape]:
    positive("linear", m=p["m"], n=p["n"], k=p["k"])
    return {
        "x": (p["m"], p["k"]),
        "w": (p["n"], p["k"]),
        "bias": (p["n"],),
        "y": (p["m"], p["n"]),
    }


def _linear_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    out = F.linear(t["x"], t["w"], t.get("bias"))
    t["y"].copy_(apply_act(out, p["act"]))


def _linear_flops(p: Params) -> int:
    _linear_shapes(p)
    outputs = p["m"] * p["n"]
    # The bias add is counted whether or not a bias is bound (params cannot tell).
    epilogue = outputs * (1 + (p["act"] != "none"))
    return 2 * outputs * p["k"] + epilogue


SMS = 132
"""Streaming multiprocessors the tile choice plans for (an H100 SXM)."""


class GemmTile(NamedTuple):
    """One tile configuration of the tiled GEMM bodies (16 x 16 threads)."""

    bm: int
    bn: int
    bk: int
    efficiency: float
    """Guessed throughput per SM relative to 128 x 128 (smem traffic per FMA)."""

    def tiles(self, rows: int, cols: int) -> int:
        return math.ceil(rows / self.bm) * math.ceil(cols / self.bn)


GEMM_TILES = (
    GemmTile(128, 128, 8, 1.0),
    GemmTile(128, 64, 8, 0.85),
    GemmTile(64, 128, 8, 0.85),
    GemmTile(64, 64, 16, 0.7),
    GemmTile(64, 32, 16, 0.55),
    GemmTile(32, 64, 16, 0.55),
    GemmTile(32, 32, 32, 0.4),
)


def gemm_tile(
    rows: int, cols: int, batches: int = 1, tiles: tuple[GemmTile, ...] = GEMM_TILES
) -> GemmTile:
    """The tile with the least estimated time for `batches` rows x cols GEMMs.

    Time ~ (tiles per SM, rounded up) x tile area / efficiency: big tiles win on
    big problems, small ones when big ones would leave SMs idle. Ties go to the
    larger tile (the earlier one in `tiles`).
    """

    def cost(t: GemmTile) -> float:
        waves = math.ceil(t.tiles(rows, cols) * batches / SMS)
        return waves * t.bm * t.bn / t.efficiency

    return min(tiles, key=cost)


def gemm_smem_bytes(t: GemmTile) -> int:
    """Double-buffered A and B k-tiles, rows padded by 4 floats."""
    return 2 * t.bk * (t.bm + 4 + t.bn + 4) * 4


GEMV_MAX_M = 8
"""Up to this many rows, linear runs the skinny body (k split over the CTA),
whatever the precision: it is bound by reading w, and fp32 costs nothing there."""

PRECISIONS = ("ieee", "tf32")
"""Choices of linear's and conv2d's `precision` param: "ieee" runs fp32 FMAs,
"tf32" tensor cores with inputs rounded to TF32 (10-bit mantissas), fp32
accumulation; the reference is the float32 op either way."""


def _gemv_shape(m: int) -> tuple[int, int]:
    """(rows held, columns per virtual block) of linear_gemv_body for m rows."""
    rows = 1 << max(0, m - 1).bit_length()
    return rows, {1: 8, 2: 8, 4: 4, 8: 2}[rows]


def _tensor_cores(p: Params) -> bool:
    return p.get("precision", "ieee") == "tf32" and p["m"] > GEMV_MAX_M


def _tc_tile(p: Params) -> GemmTile:
    from reefd.kernels import ops_linear_tc  # it imports this module

    return ops_linear_tc.tc_tile(p["m"], p["n"])


def _linear_variant(p: Params) -> str:
    """linear_gemv_body<MR, NC, ACT>, linear_tf32_body<BM, BN, ACT> or
    linear_body<BM, BN, BK, ACT>; ACT is the act's index in ACTS, a template
    argument so each epilogue compiles only its own activation."""
    act = ACTS.index(p["act"])
    if p["m"] <= GEMV_MAX_M:
        rows, cols = _gemv_shape(p["m"])
        return f"linear_gemv_body<{rows}, {cols}, {act}>"
    if _tensor_cores(p):
        t = _tc_tile(p)
        return f"linear_tf32_body<{t.bm}, {t.bn}, {act}>"
    t = gemm_tile(p["m"], p["n"])
    return f"linear_body<{t.bm}, {t.bn}, {t.bk}, {act}>"


def _linear_vb_count(p: Params) -> int:
    _linear_shapes(p)
    if p["m"] <= GEMV_MAX_M:
        return math.ceil(p["n"] / _gemv_shape(p["m"])[1])
    if _tensor_cores(p):
        return _tc_tile(p).tiles(p["m"], p["n"])
    return gemm_tile(p["m"], p["n"]).tiles(p["m"], p["n"])


def _linear_smem_bytes(p: Params) -> int:
    if p["m"] <= GEMV_MAX_M:
        rows, cols = _gemv_shape(p["m"])
        return 8 * rows * cols * 4  # 8 warps' partial sums
    if _tensor_cores(p):
        from reefd.kernels import ops_linear_tc  # it imports this module

        return ops_linear_tc.tc_smem_bytes(_tc_tile(p), "float32", b_kmajor=True)
    return gemm_smem_bytes(gemm_tile(p["m"], p["n"]))


SAMPLE_PARAMS: list[dict] = [
    # ViT-B/16 MLP up-projection, batch 8 (197 tokens each).
    {"m": 8 * 197, "n": 3072, "k": 768, "act": "relu"},
    # ViT-B/16 attention projection at batch 1.
    {"m": 197, "n": 768, "k": 768},
    # ResNet-50 classifier at batch 4.
    {"m": 4, "n": 1000, "k": 2048},
    # The first two through TF32 tensor cores.
    {"m": 8 * 197, "n": 3072, "k": 768, "act": "gelu", "precision": "tf32"},
    {"m": 197, "n": 768, "k": 768, "precision": "tf32"},
]

linear = catalog.register(
    KernelSpec(
        name="linear",
        summary=(
            "y[m,n] = x[m,k] @ w[n,k].T (+ bias[n]), optional act; precision ieee "
            "(SIMT fp32) or tf32 (tensor cores)"
        ),
        operands=(
            Operand("x", "read"),
            Operand("w", "read"),
            Operand("bias", "read", optional=True),
            Operand("y", "write"),
        ),
        params=(
            Param("m", "int"),
            Param("n", "int"),
            Param("k", "int"),
            Param("act", "str", required=False, default="none", choices=ACTS),
            Param(
                "precision", "str", required=False, default="ieee", choices=PRECISIONS
            ),
        ),
        shapes=_linear_shapes,
        reference=_linear_reference,
        flops=_linear_flops,
        cta_threads=256,
        elems_per_virtual_block=64 * 64,
        source="linear.cu",
        variant=_linear_variant,
        vb_count=_linear_vb_count,
        smem_bytes=_linear_smem_bytes,
    )
)
