"""Data-movement kernels: `embedding` (a row gather) and `strided_copy`.

`embedding` copies table rows picked by int64 ids; its reference refuses an id
outside `[0, vocab)` with a RequestError (ids are request data), while the CUDA
body writes a row of NaN for one. `strided_copy` copies a strided view of `x`
into a strided view of `y` over an iteration shape of up to 6 dims: permute,
transpose, slice, select, expand and each part of a cat lower to it. Its shape
rule views both operands as flat vectors just long enough for the largest offset
and refuses `y` strides that would write one element twice. The CUDA bodies are
in kernels/src/gather.cu. Imports torch, reefd.errors and this package's spec
and catalog only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from reefd.errors import GraphError, RequestError
from reefd.kernels import catalog
from reefd.kernels.spec import KernelSpec, Operand, Param, Params, Shape, positive

CTA_THREADS = 256
EMBEDDING_ROWS_PER_VB = 8
"""Ids per virtual block of the embedding body (one per warp)."""
COPY_ELEMS_PER_VB = 1024
"""Elements per virtual block of the strided copy body (4 per thread)."""
COPY_DIMS = 6
"""Dims of a strided copy's iteration shape (padded with leading 1s)."""


# --- embedding -------------------------------------------------------------------


def _embedding_shapes(p: Params) -> dict[str, Shape]:
    positive("embedding", n=p["n"], vocab=p["vocab"], dim=p["dim"])
    return {
        "ids": (p["n"],),
        "table": (p["vocab"], p["dim"]),
        "y": (p["n"], p["dim"]),
    }


def _embedding_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    ids, vocab = t["ids"], p["vocab"]
    bad = ((ids < 0) | (ids >= vocab)).nonzero()
    if len(bad):
        at = int(bad[0, 0])
        raise RequestError(
            f"kernel 'embedding': id {int(ids[at])} at position {at} is outside "
            f"[0, vocab={vocab})"
        )
    t["y"].copy_(F.embedding(ids, t["table"]))


def _embedding_flops(p: Params) -> int:
    return p["n"] * p["dim"]


def _embedding_vb_count(p: Params) -> int:
    _embedding_shapes(p)
    return math.ceil(p["n"] / EMBEDDING_ROWS_PER_VB)


# --- strided copy ----------------------------------------------------------------


def _six(name: str, value: Sequence[int], minimum: int) -> tuple[int, ...]:
    """Check that an ints param holds exactly 6 values, each >= `minimum`."""
    if len(value) != COPY_DIMS or min(value) < minimum:
        raise GraphError(
            f"kernel 'strided_copy': {name}={list(value)} must be {COPY_DIMS} ints "
            f">= {minimum}"
        )
    return tuple(value)


def _check_no_overlap(shape: Shape, strides: Shape) -> None:
    """Refuse y strides under which two indices of `shape` write one element.

    Conservative (torch's non-overlap rule): taken by increasing stride, each
    stride of an extent > 1 must pass the largest offset the smaller ones reach.
    """
    reach = 0
    used = [(s, n) for s, n in zip(strides, shape, strict=True) if n > 1]
    for stride, extent in sorted(used):
        if stride == 0:
            raise GraphError(
                f"kernel 'strided_copy': y_strides={list(strides)} has stride 0 on "
                f"an extent {extent} of shape={list(shape)}: one element written "
                f"{extent} times"
            )
        if stride <= reach:
            raise GraphError(
                f"kernel 'strided_copy': y_strides={list(strides)} overlap for "
                f"shape={list(shape)}: two indices write one element"
            )
        reach += (extent - 1) * stride


def _span(shape: Shape, strides: Shape, offset: int) -> int:
    """Elements from the flat view's start through the largest offset reached."""
    return offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1


def _strided_copy_shapes(p: Params) -> dict[str, Shape]:
    shape = _six("shape", p["shape"], 1)
    x_strides = _six("x_strides", p["x_strides"], 0)
    y_strides = _six("y_strides", p["y_strides"], 0)
    for name in ("x_offset", "y_offset"):
        if p[name] < 0:
            raise GraphError(f"kernel 'strided_copy': {name}={p[name]} must be >= 0")
    _check_no_overlap(shape, y_strides)
    return {
        "x": (_span(shape, x_strides, p["x_offset"]),),
        "y": (_span(shape, y_strides, p["y_offset"]),),
    }


def _strided(flat: torch.Tensor, p: Params, which: str) -> torch.Tensor:
    """The elements of a flat view that `shape`, `<which>_strides` and
    `<which>_offset` select (the view may start anywhere in its storage)."""
    if flat.dim() != 1 or (flat.numel() > 1 and flat.stride(0) != 1):
        raise ValueError(f"strided_copy: operand {which!r} is not a flat dense view")
    offset = flat.storage_offset() + p[f"{which}_offset"]
    return flat.as_strided(p["shape"], p[f"{which}_strides"], offset)


def _strided_copy_reference(t: dict[str, torch.Tensor], p: Params) -> None:
    _strided(t["y"], p, "y").copy_(_strided(t["x"], p, "x"))


def _strided_copy_flops(p: Params) -> int:
    return math.prod(p["shape"])


def _strided_copy_vb_count(p: Params) -> int:
    _strided_copy_shapes(p)
    return math.ceil(math.prod(p["shape"]) / COPY_ELEMS_PER_VB)


def _contiguous(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major strides of `shape`."""
    return tuple(math.prod(shape[d + 1 :]) for d in range(len(shape)))


def copy_params(
    shape: Sequence[int],
    x_strides: Sequence[int],
    y_strides: Sequence[int] | None = None,
    x_offset: int = 0,
    y_offset: int = 0,
) -> dict[str, Any]:
    """strided_copy params for an iteration shape of up to 6 dims: padded with
    leading 1s (stride 0); y contiguous unless `y_strides` is given."""
    pad = [0] * (COPY_DIMS - len(shape))
    return {
        "shape": tuple([1] * len(pad) + list(shape)),
        "x_strides": tuple(pad + list(x_strides)),
        "x_offset": x_offset,
        "y_strides": tuple(pad + list(y_strides or _contiguous(shape))),
        "y_offset": y_offset,
    }


_QKV = (8, 128, 12, 64)  # DistilBERT q/k/v at batch 8: [batch, seq, heads, head_dim]
_B, _S, _H, _D = _contiguous(_QKV)
_HW = 56 * 56
SAMPLE_PARAMS: list[dict] = [
    # DistilBERT: 8 x 128 ids over the 30522 x 768 word-embedding table.
    {"n": 8 * 128, "vocab": 30522, "dim": 768},
    # An odd row length (the scalar path).
    {"n": 37, "vocab": 1000, "dim": 33},
    # DistilBERT attention: q [8, 128, 12, 64] permuted to [8, 12, 128, 64] ...
    copy_params((8, 12, 128, 64), (_B, _H, _S, _D)),
    # ... and k permuted and transposed to [8, 12, 64, 128].
    copy_params((8, 12, 64, 128), (_B, _H, _D, _S)),
    # ViT-B/16 class token select x[:, 0] of [8, 197, 768].
    copy_params((8, 768), (197 * 768, 1)),
    # ViT-B/16 class token expand [1, 1, 768] -> [8, 1, 768] (x stride 0).
    copy_params((8, 768), (0, 1)),
    # ViT-B/16 patchify: [8, 3, 14, 16, 14, 16] -> [8, 14, 14, 3, 16, 16].
    copy_params(
        (8, 14, 14, 3, 16, 16),
        (3 * 224 * 224, 16 * 224, 16, 224 * 224, 224, 1),
    ),
    # DenseNet-121 block 1: cat of [8, 64, 56, 56] and [8, 32, 56, 56] into
    # [8, 96, 56, 56]; the second piece lands at channel 64.
    copy_params((8, 64, 56, 56), _contiguous((8, 64, 56, 56)), (96 * _HW, _HW, 56, 1)),
    copy_params(
        (8, 32, 56, 56),
        _contiguous((8, 32, 56, 56)),
        (96 * _HW, _HW, 56, 1),
        y_offset=64 * _HW,
    ),
]

embedding = catalog.register(
    KernelSpec(
        name="embedding",
        summary="y[i, :] = table[ids[i], :] for int64 ids in [0, vocab)",
        operands=(
            Operand("ids", "read", dtypes=("int64",)),
            Operand("table", "read"),
            Operand("y", "write"),
        ),
        params=(Param("n", "int"), Param("vocab", "int"), Param("dim", "int")),
        shapes=_embedding_shapes,
        reference=_embedding_reference,
        flops=_embedding_flops,
        cta_threads=CTA_THREADS,
        source="gather.cu",
        variant=lambda p: "embedding_body",
        vb_count=_embedding_vb_count,
        smem_bytes=lambda p: 0,
    )
)

strided_copy = catalog.register(
    KernelSpec(
        name="strided_copy",
        summary=(
            "y[y_offset + i . y_strides] = x[x_offset + i . x_strides] for every "
            "index i of shape (6 dims, elements)"
        ),
        operands=(Operand("x", "read"), Operand("y", "write")),
        params=(
            Param("shape", "ints", size=COPY_DIMS),
            Param("x_strides", "ints", size=COPY_DIMS),
            Param("x_offset", "int", required=False, default=0),
            Param("y_strides", "ints", size=COPY_DIMS),
            Param("y_offset", "int", required=False, default=0),
        ),
        shapes=_strided_copy_shapes,
        reference=_strided_copy_reference,
        flops=_strided_copy_flops,
        elems_per_virtual_block=COPY_ELEMS_PER_VB,
        cta_threads=CTA_THREADS,
        source="gather.cu",
        variant=lambda p: "strided_copy_body",
        vb_count=_strided_copy_vb_count,
        smem_bytes=lambda p: 0,
    )
)
