"""Half-precision dense kernels on tensor cores: `linear_f16` and `linear_bf16`.

y[m, n] = act(x[m, k] @ w[n, k].T + bias[n]) with every operand float16 (resp.
bfloat16), fp32 accumulation and one rounding of y. Owns their specs, their torch
reference (float32 from the half inputs, rounded once), and the tensor-core tile
configuration shared with the half and tf32 bmm kernels (`TC_TILES`, `tc_tile`,
`tc_smem_bytes`, which mirrors `TcCfg` in kernels/src/tc_gemm.cuh). CUDA bodies:
kernels/src/linear_tc.cu. Imports torch and this package's spec, catalog, act
(the activations) and ops_linear (the tile chooser) only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from reefd.kernels import catalog
from reefd.kernels.act import ACTS, act_flops, apply_act
from reefd.kernels.ops_linear import GemmTile, gemm_tile
from reefd.kernels.spec import (
    ITEMSIZE_BYTES,
    KernelSpec,
    Operand,
    Param,
    Params,
    Shape,
    positive,
)

# --- the tensor-core tile (kernels/src/tc_gemm.cuh) -------------------------------

TC_TILES = (
    GemmTile(128, 128, 32, 1.0),
    GemmTile(128, 64, 32, 0.85),
    GemmTile(64, 128, 32, 0.85),
    GemmTile(64, 64, 32, 0.65),
    GemmTile(32, 64, 32, 0.4),
)
"""BM x BN tiles of tc_gemm.cuh; bk is the k per stage for halves (64 bytes a row:
16 for tf32), which the CUDA tile derives from the element size."""

TC_STAGES = 3
TC_ROW_BYTES = 80
"""Bytes per shared-memory row of a k-contiguous tile: 64 of k plus 16 of pad."""


def tc_tile(rows: int, cols: int, batches: int = 1) -> GemmTile:
    """The tensor-core tile for `batches` rows x cols outputs."""
    return gemm_tile(rows, cols, batches, TC_TILES)


def tc_smem_bytes(tile: GemmTile, dtype: str, b_kmajor: bool) -> int:
    """Dynamic shared memory of tc_gemm.cuh's tile (TcCfg::SMEM_BYTES).

    Per stage: A as [BM][80 B]; B as [BN][80 B] when k-contiguous, else as
    [64 B / itemsize][BN * itemsize + pad] (pad 16 B for halves, 32 B for floats).
    """
    itemsize = ITEMSIZE_BYTES[dtype]
    a_bytes = tile.bm * TC_ROW_BYTES
    if b_kmajor:
        b_bytes = tile.bn * TC_ROW_BYTES
    else:
        row = tile.bn * itemsize + (32 if itemsize == 4 else 16)
        b_bytes = (64 // itemsize) * row
    return TC_STAGES * (a_bytes + b_bytes)


# --- linear_f16 / linear_bf16 --------------------------------------------------------


def _shapes(kernel: str) -> Callable[[Params], dict[str, Shape]]:
    def shapes(p: Params) -> dict[str, Shape]:
        positive(kernel, m=p["m"], n=p["n"], k=p["k"])
        return {
            "x": (p["m"], p["k"]),
            "w": (p["n"], p["k"]),
            "bias": (p["n"],),
            "y": (p["m"], p["n"]),
        }

    return shapes


def _reference(t: dict[str, torch.Tensor], p: Params) -> None:
    """float32 from the half inputs, activation, then one rounding to y's dtype."""
    bias = t.get("bias")
    out = F.linear(
        t["x"].float(), t["w"].float(), None if bias is None else bias.float()
    )
    t["y"].copy_(apply_act(out, p["act"]).to(t["y"].dtype))


def _flops(p: Params) -> int:
    outputs = p["m"] * p["n"]
    # The bias add is counted whether or not a bias is bound (params cannot tell).
    return 2 * outputs * p["k"] + outputs * (1 + act_flops(p["act"]))


def _variant(kernel: str) -> Callable[[Params], str]:
    def variant(p: Params) -> str:
        t = tc_tile(p["m"], p["n"])
        return f"{kernel}_body<{t.bm}, {t.bn}>"

    return variant


def _vb_count(kernel: str) -> Callable[[Params], int]:
    shapes = _shapes(kernel)

    def vb_count(p: Params) -> int:
        shapes(p)
        return tc_tile(p["m"], p["n"]).tiles(p["m"], p["n"])

    return vb_count


def _smem_bytes(dtype: str) -> Callable[[Params], int]:
    def smem_bytes(p: Params) -> int:
        return tc_smem_bytes(tc_tile(p["m"], p["n"]), dtype, b_kmajor=True)

    return smem_bytes


def _linear_half(kernel: str, dtype: str) -> KernelSpec:
    dtypes = (dtype,)
    return KernelSpec(
        name=kernel,
        summary=(
            f"y[m,n] = x[m,k] @ w[n,k].T (+ bias[n]), optional act; {dtype} "
            "operands, fp32 accumulation (tensor cores), y rounded once"
        ),
        operands=(
            Operand("x", "read", dtypes),
            Operand("w", "read", dtypes),
            Operand("bias", "read", dtypes, optional=True),
            Operand("y", "write", dtypes),
        ),
        params=(
            Param("m", "int"),
            Param("n", "int"),
            Param("k", "int"),
            Param("act", "str", required=False, default="none", choices=ACTS),
        ),
        shapes=_shapes(kernel),
        reference=_reference,
        flops=_flops,
        cta_threads=256,
        elems_per_virtual_block=128 * 128,
        source="linear_tc.cu",
        variant=_variant(kernel),
        vb_count=_vb_count(kernel),
        smem_bytes=_smem_bytes(dtype),
    )


SAMPLE_PARAMS: list[dict] = [
    # ViT-B/16 qkv projection at batch 8 (197 tokens each).
    {"m": 8 * 197, "n": 2304, "k": 768},
    # ViT-B/16 MLP up-projection at batch 8.
    {"m": 8 * 197, "n": 3072, "k": 768, "act": "relu"},
    # DistilBERT attention projection at batch 8, seq 128.
    {"m": 8 * 128, "n": 768, "k": 768},
    # ResNet-50 classifier at batch 8.
    {"m": 8, "n": 1000, "k": 2048},
]

linear_f16 = catalog.register(_linear_half("linear_f16", "float16"))
linear_bf16 = catalog.register(_linear_half("linear_bf16", "bfloat16"))
