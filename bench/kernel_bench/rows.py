"""A row of the results (one call: what it is, what was measured, the ratios)
and the summary over rows: geomeans of the time ratios, the worst preemptible
overheads, the per-kernel figures, and the targets and tolerances they are held
to."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

DATA_MOVEMENT = frozenset({"copy", "strided_copy", "cast_i64"})
"""Kernels whose torch reference is a copy and nothing else."""
TARGET_RATIO = 1.25
"""docs/gpu-owed.md: geomean ours/torch <= 1.25."""
TARGET_PREEMPT = 1.05
"""docs/gpu-owed.md: preemptible vs plain overhead <= 5 %."""
TOLERANCE = {"fp32": 1e-3, "tf32": 5e-3, "bf16": 2e-2, "f16": 1e-2}
"""Largest relative L2 error of a correct call, by the precision it computes in."""


@dataclass
class Row:
    """One distinct call: what it is, what was measured, and the ratios."""

    kernel: str
    shape: str
    params: dict[str, Any]
    bound: list[str]
    count: int
    models: dict[str, int]
    kind: str = "compute"
    """'move' for DATA_MOVEMENT kernels (torch's op is the copy itself)."""
    variant: str = ""
    n_vb: int = 0
    grid: int = 0
    """CTAs of the preemptible launch."""
    ctas_per_sm: int = 0
    driver_ctas_per_sm: int = 0
    registers: int = 0
    smem_bytes: int = 0
    flops: int = 0
    bytes: int = 0
    precision: str = "fp32"
    ours_us: float | None = None
    preempt_us: float | None = None
    preempt_mapped_us: float | None = None
    torch_us: float | None = None
    copy_us: float | None = None
    spread_us: dict[str, list[float]] = field(default_factory=dict)
    """[p10, p90] of each measurement, by name."""
    runs: int = 0
    floor_us: float | None = None
    rel_err: float | None = None
    preempt_exact: bool | None = None
    note: str = ""
    error: str = ""
    # derived (see `derive`)
    torch_op_us: float | None = None
    ratio: float | None = None
    ratio_no_copy: float | None = None
    preempt_ratio: float | None = None
    preempt_mapped_ratio: float | None = None
    ours_over_floor: float | None = None

    @property
    def correct(self) -> bool:
        """Plain matches torch within its precision's tolerance."""
        return (
            not self.error
            and self.rel_err is not None
            and math.isfinite(self.rel_err)
            and self.rel_err <= TOLERANCE.get(self.precision, TOLERANCE["fp32"])
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b > 0:
        return None
    return a / b


def derive(row: Row) -> Row:
    """The row with its ratios computed from its timings.

    ratio = ours / torch (the reference, its copy into y included);
    ratio_no_copy = ours / (torch - copy): the torch op alone (for 'move'
    kernels the copy is the op: equal to ratio; None when the difference is not
    positive, i.e. lost in noise). preempt_ratio = preemptible / plain.
    """
    torch_op = row.torch_us
    if row.kind != "move" and row.torch_us is not None and row.copy_us is not None:
        torch_op = row.torch_us - row.copy_us
        torch_op = torch_op if torch_op > 0 else None
    return replace(
        row,
        torch_op_us=torch_op,
        ratio=_div(row.ours_us, row.torch_us),
        ratio_no_copy=_div(row.ours_us, torch_op),
        preempt_ratio=_div(row.preempt_us, row.ours_us),
        preempt_mapped_ratio=_div(row.preempt_mapped_us, row.ours_us),
        ours_over_floor=_div(row.ours_us, row.floor_us),
    )


def geomean(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Weighted geometric mean (all weights 1 when None); nan for no values."""
    weights = weights if weights is not None else [1.0] * len(values)
    total = sum(weights)
    if not values or total <= 0:
        return math.nan
    return math.exp(
        sum(w * math.log(v) for v, w in zip(values, weights, strict=True)) / total
    )


def _means(rows: Sequence[Row], attr: str) -> dict[str, Any]:
    pairs = [(getattr(r, attr), r.count) for r in rows if getattr(r, attr)]
    values = [v for v, _ in pairs]
    return {
        "calls": len(pairs),
        "geomean_weighted": geomean(values, [c for _, c in pairs]),
        "geomean_unweighted": geomean(values),
    }


def _worst(rows: Sequence[Row], attr: str) -> dict[str, Any]:
    found = [r for r in rows if getattr(r, attr) and r.preempt_exact]
    if not found:
        return {"ratio": math.nan, "kernel": "", "shape": ""}
    worst = max(found, key=lambda r: getattr(r, attr))
    over = sum(1 for r in found if getattr(r, attr) > TARGET_PREEMPT)
    return {
        "ratio": getattr(worst, attr),
        "kernel": worst.kernel,
        "shape": worst.shape,
        "over_target": over,
        "geomean_weighted": geomean(
            [getattr(r, attr) for r in found], [r.count for r in found]
        ),
    }


def by_kernel(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per kernel: distinct calls, zoo count, time shares and the mean ratios."""
    out = []
    for kernel in sorted({r.kernel for r in rows}):
        mine = [r for r in rows if r.kernel == kernel]
        good = [r for r in mine if r.correct]
        out.append(
            {
                "kernel": kernel,
                "calls": len(mine),
                "count": sum(r.count for r in mine),
                "bad": len(mine) - len(good),
                "ours_us_total": sum((r.ours_us or 0) * r.count for r in good),
                "torch_us_total": sum((r.torch_us or 0) * r.count for r in good),
                "ratio": _means(good, "ratio")["geomean_weighted"],
                "ratio_no_copy": _means(good, "ratio_no_copy")["geomean_weighted"],
                "preempt_max": max(
                    (r.preempt_ratio for r in good if r.preempt_ratio), default=None
                ),
            }
        )
    return out


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Geomeans of the time ratios (over correct calls, weighted by occurrence in
    the zoo and unweighted), the worst preemptible/plain overheads, counts."""
    good = [r for r in rows if r.correct]
    return {
        "rows": len(rows),
        "errors": sum(1 for r in rows if r.error),
        "wrong": sum(1 for r in rows if not r.error and not r.correct),
        "preempt_not_exact": sum(1 for r in rows if r.preempt_exact is False),
        "ratio": _means(good, "ratio"),
        "ratio_no_copy": _means(good, "ratio_no_copy"),
        "preempt_max": _worst(good, "preempt_ratio"),
        "preempt_mapped_max": _worst(good, "preempt_mapped_ratio"),
        "target_ratio": TARGET_RATIO,
        "target_preempt": TARGET_PREEMPT,
        "by_kernel": by_kernel(rows),
    }
