"""Batched matmul: `bmm` (float32) and `bmm_f16` / `bmm_bf16` (tensor cores).

y[i] = scale * a[i] @ b[i], with a [batch, m, k], y [batch, m, n] and b viewed
[batch, k, n], or [batch, n, k] when `trans_b` (attention's Q @ K^T without a
transpose copy). `bmm` runs a SIMT fp32 GEMM (precision "ieee") or tensor cores
in TF32 ("tf32"); the half kernels accumulate in fp32 and round y once. Owns
their specs, shape rule, torch references and the choice of CUDA body per shape
(kernels/src/bmm.cu). Imports torch and this package's spec, catalog,
ops_linear (SIMT tiles) and ops_linear_tc (tensor-core tiles) only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reefd.kernels import catalog
from reefd.kernels.ops_linear import GemmTile, gemm_smem_bytes, gemm_tile
from reefd.kernels.ops_linear_tc import tc_smem_bytes, tc_tile
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

PRECISIONS = ("ieee", "tf32")


def _shapes(kernel: str) -> Callable[[Params], dict[str, Shape]]:
    def shapes(p: Params) -> dict[str, Shape]:
        batch, m, n, k = p["batch"], p["m"], p["n"], p["k"]
        positive(kernel, batch=batch, m=m, n=n, k=k)
        return {
            "a": (batch, m, k),
            "b": (batch, n, k) if p["trans_b"] else (batch, k, n),
            "y": (batch, m, n),
        }

    return shapes


def _reference(t: dict[str, torch.Tensor], p: Params) -> None:
    """torch.bmm in float32 (half inputs upcast), times scale, rounded to y."""
    b = t["b"].float()
    out = torch.bmm(t["a"].float(), b.transpose(1, 2) if p["trans_b"] else b)
    t["y"].copy_((out * p["scale"]).to(t["y"].dtype))


def _flops(p: Params) -> int:
    outputs = p["batch"] * p["m"] * p["n"]
    return 2 * outputs * p["k"] + outputs  # the scale multiply


def _tensor_cores(p: Params) -> bool:
    """tf32 bmm and the half kernels (which have no precision param)."""
    return p.get("precision") != "ieee"


def _tile(p: Params) -> GemmTile:
    if _tensor_cores(p):
        return tc_tile(p["m"], p["n"], p["batch"])
    return gemm_tile(p["m"], p["n"], p["batch"])


def _variant(kernel: str) -> Callable[[Params], str]:
    """bmm_body<BM, BN, BK, TB> (SIMT) or <kernel>_body<BM, BN, TB> (tensor
    cores; bmm's is bmm_tf32_body), TB = trans_b as 0/1."""
    body = "bmm_tf32_body" if kernel == "bmm" else f"{kernel}_body"

    def variant(p: Params) -> str:
        t, tb = _tile(p), int(p["trans_b"])
        if _tensor_cores(p):
            return f"{body}<{t.bm}, {t.bn}, {tb}>"
        return f"bmm_body<{t.bm}, {t.bn}, {t.bk}, {tb}>"

    return variant


def _vb_count(kernel: str) -> Callable[[Params], int]:
    shapes = _shapes(kernel)

    def vb_count(p: Params) -> int:
        shapes(p)
        return p["batch"] * _tile(p).tiles(p["m"], p["n"])

    return vb_count


def _smem_bytes(dtype: str) -> Callable[[Params], int]:
    def smem_bytes(p: Params) -> int:
        if _tensor_cores(p):
            return tc_smem_bytes(_tile(p), dtype, b_kmajor=p["trans_b"])
        return gemm_smem_bytes(_tile(p))

    return smem_bytes


_SHAPE_PARAMS = (
    Param("batch", "int"),
    Param("m", "int"),
    Param("n", "int"),
    Param("k", "int"),
    Param("trans_b", "bool", required=False, default=False),
    Param("scale", "float", required=False, default=1.0),
)


def _bmm_spec(kernel: str, dtype: str, summary: str) -> KernelSpec:
    dtypes = (dtype,)
    extra = (
        (Param("precision", "str", required=False, default="ieee", choices=PRECISIONS),)
        if kernel == "bmm"
        else ()
    )
    return KernelSpec(
        name=kernel,
        summary=summary,
        operands=(
            Operand("a", "read", dtypes),
            Operand("b", "read", dtypes),
            Operand("y", "write", dtypes),
        ),
        params=(*_SHAPE_PARAMS, *extra),
        shapes=_shapes(kernel),
        reference=_reference,
        flops=_flops,
        cta_threads=256,
        elems_per_virtual_block=128 * 128,
        source="bmm.cu",
        variant=_variant(kernel),
        vb_count=_vb_count(kernel),
        smem_bytes=_smem_bytes(dtype),
    )


_ATTN = {"batch": 8 * 12, "k": 64, "trans_b": True, "scale": 64**-0.5}
SAMPLE_PARAMS: list[dict] = [
    # ViT-B/16 attention scores at batch 8 (12 heads, 197 tokens): Q @ K^T.
    {**_ATTN, "m": 197, "n": 197},
    # DistilBERT P @ V at batch 8 (12 heads, seq 128, head dim 64).
    {"batch": 8 * 12, "m": 128, "n": 64, "k": 128},
    # The same two through TF32 tensor cores (DistilBERT scores, ViT-B P @ V).
    {"only_for": "bmm", **_ATTN, "m": 128, "n": 128, "precision": "tf32"},
    {"only_for": "bmm", "batch": 96, "m": 197, "n": 64, "k": 197, "precision": "tf32"},
]

bmm = catalog.register(
    _bmm_spec(
        "bmm",
        "float32",
        "y[i] = scale * a[i] @ b[i] (b[i].T if trans_b), float32; precision ieee "
        "(SIMT fp32) or tf32 (tensor cores)",
    )
)
bmm_f16 = catalog.register(
    _bmm_spec(
        "bmm_f16",
        "float16",
        "y[i] = scale * a[i] @ b[i] (b[i].T if trans_b), float16, fp32 "
        "accumulation (tensor cores), y rounded once",
    )
)
bmm_bf16 = catalog.register(
    _bmm_spec(
        "bmm_bf16",
        "bfloat16",
        "y[i] = scale * a[i] @ b[i] (b[i].T if trans_b), bfloat16, fp32 "
        "accumulation (tensor cores), y rounded once",
    )
)
