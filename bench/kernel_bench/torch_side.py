"""The torch side of a call: its operands (random, on `DEVICE`), what it computes
in (fp32, tf32, bf16, f16), torch's TF32 switches, the torch code timed against
ours (the spec's reference, or an override) and the comparisons of results.

`DEVICE` is read from the package (bench/kernel_bench/__init__.py) when used, so
a CPU dry run sets it in one place.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from bench import kernel_bench as kb
from reefd.kernels.spec import TORCH_DTYPE, KernelSpec

TF32_SETTING = (
    "torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False"
)


def sync() -> None:
    if kb.DEVICE == "cuda":
        torch.cuda.synchronize()


def precision(spec: KernelSpec, params: Mapping[str, Any]) -> str:
    """What the call computes in: fp32, tf32, bf16 or f16."""
    out = next(o for o in spec.operands if o.access == "write").dtypes[0]
    if out in ("bfloat16", "float16"):
        return "bf16" if out == "bfloat16" else "f16"
    return "tf32" if params.get("precision") == "tf32" else "fp32"


@contextlib.contextmanager
def torch_tf32(enabled: bool) -> Iterator[None]:
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _embedding_without_check(t: dict[str, torch.Tensor], p: Mapping) -> None:
    t["y"].copy_(torch.nn.functional.embedding(t["ids"], t["table"]))


TORCH_OVERRIDES: dict[str, tuple[Callable[..., None], str]] = {
    "embedding": (
        _embedding_without_check,
        "torch timed as F.embedding + copy, without the reference's host-side "
        "id check (a device sync)",
    ),
}
"""Kernels whose reference would not time fairly, the torch code timed instead."""


def _fan_in(spec: KernelSpec, p: Mapping[str, Any]) -> dict[str, float]:
    """Weights ~ N(0, 1/fan_in) so outputs stay O(1)."""
    if spec.name.startswith("linear"):
        return {"w": p["k"] ** -0.5}
    if spec.name == "conv2d":
        return {"w": (p["c_in"] // p["groups"] * p["kh"] * p["kw"]) ** -0.5}
    return {}


def make_operands(
    spec: KernelSpec, params: Mapping[str, Any], bound: Sequence[str], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random CUDA operands for a call: N(0, 1) floats (weights scaled by fan-in),
    integer operands below `vocab` (embedding ids) or in [-1000, 1000), outputs
    poisoned (NaN, or -1 for integers)."""
    gen = torch.Generator(device=kb.DEVICE).manual_seed(seed)
    shapes = spec.shapes(params)
    scale = _fan_in(spec, params)
    tensors = {}
    for op in spec.operands:
        if op.name not in bound:
            continue
        shape, dtype = shapes[op.name], TORCH_DTYPE[op.dtypes[0]]
        if op.access == "write":
            t = torch.empty(shape, dtype=dtype, device=kb.DEVICE)
            t.fill_(math.nan if dtype.is_floating_point else -1)
        elif dtype.is_floating_point:
            t = torch.randn(shape, generator=gen, device=kb.DEVICE)
            t = (t * scale.get(op.name, 1.0)).to(dtype)
        else:
            low, high = (0, params["vocab"]) if "vocab" in params else (-1000, 1000)
            t = torch.randint(
                low, high, shape, generator=gen, device=kb.DEVICE, dtype=dtype
            )
        tensors[op.name] = t
    return tensors


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| in float64 (nan if got has NaN)."""
    diff = (got.double() - want.double()).norm().item()
    ref = want.double().norm().item()
    return diff / ref if ref > 0 else diff


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype.is_floating_point:
        a, b = a.view(torch.int8), b.view(torch.int8)
    return bool(torch.equal(a, b))
