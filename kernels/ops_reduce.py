"""The reduction kernel: `mean` over the middle dim of an `[outer, red, inner]` view.

Any `x.mean(dim=d)` is this kernel with `outer` the product of the dims before
`d` and `inner` the product of those after it (global average pooling over HW is
`inner == 1`, a mean over the sequence of `[batch, seq, hidden]` is `inner > 1`).
Owns the shape rule, the torch reference and the choice of the CUDA body in
kernels/src/reduce.cu: contiguous rows (`inner == 1`) are reduced by 8, 32 or
256 threads each; columns (`inner > 1`) by one thread each, or by 8 threads
splitting a long reduction. Every output is summed in a fixed order, so results
are deterministic. Imports torch and this package's spec and catalog only.
"""

from __future__ import annotations

import math

import torch

from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

CTA_THREADS = 256
ROW_THREADS = ((64, 8), (2048, 32))
"""(longest row, threads per row) for `inner == 1`; longer rows get a CTA each."""
SPLIT_MIN_RED = 32
"""Shortest reduction that 8 threads per column share (`inner > 1`)."""
SPLIT = 8


def _mean_shapes(p: Params) -> dict[str, Shape]:
    outer, red, inner = p["outer"], p["red"], p["inner"]
    positive("mean", outer=outer, red=red, inner=inner)
    return {"x": (outer, red, inner), "y": (outer, inner)}


def _mean_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    t["y"].copy_(t["x"].mean(dim=1))


def _mean_flops(p: Params) -> int:
    return p["outer"] * p["red"] * p["inner"]


def _threads_per_row(red: int) -> int:
    """Threads reducing one contiguous row of `red` values (`inner == 1`)."""
    return next((tpr for longest, tpr in ROW_THREADS if red <= longest), CTA_THREADS)


def _split(red: int) -> int:
    """Threads sharing one column's reduction (`inner > 1`)."""
    return SPLIT if red >= SPLIT_MIN_RED else 1


def _mean_variant(p: Params) -> str:
    if p["inner"] == 1:
        return f"mean_rows_body<{_threads_per_row(p['red'])}>"
    return f"mean_cols_body<{_split(p['red'])}>"


def _mean_vb_count(p: Params) -> int:
    _mean_shapes(p)
    if p["inner"] == 1:
        rows_per_vb = CTA_THREADS // _threads_per_row(p["red"])
        return math.ceil(p["outer"] / rows_per_vb)
    cols_per_vb = CTA_THREADS // _split(p["red"])
    return math.ceil(p["outer"] * p["inner"] / cols_per_vb)


def _mean_smem_bytes(p: Params) -> int:
    if p["inner"] == 1:
        return 8 * 4 if _threads_per_row(p["red"]) == CTA_THREADS else 0
    return CTA_THREADS * 4 if _split(p["red"]) > 1 else 0


SAMPLE_PARAMS: list[dict] = [
    # ResNet-50 global average pool as a mean over HW of [8, 2048, 7, 7].
    {"outer": 8 * 2048, "red": 7 * 7, "inner": 1},
    # DistilBERT mean pooling over the sequence of [8, 128, 768].
    {"outer": 8, "red": 128, "inner": 768},
    # A mean over channels of [8, 3, 224 * 224] (one thread per column).
    {"outer": 8, "red": 3, "inner": 224 * 224},
    # MobileNetV2's last pool as a mean over HW of [8, 1280, 7, 7].
    {"outer": 8 * 1280, "red": 7 * 7, "inner": 1},
    # ResNet-50 layer1 pooled over HW: rows of 3136, a CTA each.
    {"outer": 8 * 256, "red": 56 * 56, "inner": 1},
    # Rows of 768 (a mean over the hidden dim): 32 threads per row.
    {"outer": 8 * 128, "red": 768, "inner": 1},
]

mean = catalog.register(
    KernelSpec(
        name="mean",
        summary="y = x.mean(dim=1) of x viewed as [outer, red, inner]",
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(Param("outer", "int"), Param("red", "int"), Param("inner", "int")),
        shapes=_mean_shapes,
        reference=_mean_reference,
        flops=_mean_flops,
        cta_threads=CTA_THREADS,
        source="reduce.cu",
        variant=_mean_variant,
        vb_count=_mean_vb_count,
        smem_bytes=_mean_smem_bytes,
    )
)
