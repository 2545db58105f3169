"""The PNG of a results file: ours/torch and preemptible/plain per call, one band
per kernel (matplotlib, imported only when drawing)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.kernel_bench.report import num
from bench.kernel_bench.rows import TARGET_PREEMPT, TARGET_RATIO, Row, summarize


def plot(results: Mapping[str, Any], path: Path) -> Path:
    """PNG: ours/torch per call (log scale, lines at 1.0 and the 1.25 target) and
    preemptible/plain per call (lines at 1.0 and 1.05), one band per kernel (its
    calls spread across it, most frequent first). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = [Row.from_dict(r) for r in results["rows"]]
    rows = [r for r in rows if r.ratio]
    xs, names = band_positions(rows)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 9), sharex=True)
    top.scatter(
        xs,
        [r.ratio for r in rows],
        s=[10 + 3 * min(r.count, 40) for r in rows],
        c=["tab:blue" if r.correct else "tab:red" for r in rows],
        alpha=0.7,
        label="ours / torch (ref incl. copy); size ~ zoo count; red = wrong",
    )
    no_copy = [
        (x, r.ratio_no_copy)
        for x, r in zip(xs, rows, strict=True)
        if r.ratio_no_copy and r.kind != "move"
    ]
    top.scatter(
        [x for x, _ in no_copy],
        [v for _, v in no_copy],
        s=14,
        facecolors="none",
        edgecolors="tab:orange",
        label="ours / (torch - copy)",
    )
    top.axhline(1.0, color="black", lw=0.8)
    top.axhline(TARGET_RATIO, color="tab:green", ls="--", label="target 1.25")
    top.set_yscale("log")
    plain_numbers = FuncFormatter(lambda v, _: f"{v:g}")
    top.yaxis.set_major_formatter(plain_numbers)
    top.yaxis.set_minor_formatter(plain_numbers)
    top.set_ylabel("time ratio (log)")
    top.legend(loc="upper left", fontsize=8)
    for attr, color, size, label in (
        ("preempt_mapped_ratio", "tab:gray", 8, "flag in mapped host memory"),
        ("preempt_ratio", "tab:purple", 12, "flag in device memory"),
    ):
        pts = [
            (x, getattr(r, attr))
            for x, r in zip(xs, rows, strict=True)
            if getattr(r, attr)
        ]
        bottom.scatter(
            [x for x, _ in pts], [v for _, v in pts], s=size, c=color, label=label
        )
    bottom.axhline(1.0, color="black", lw=0.8)
    bottom.axhline(TARGET_PREEMPT, color="tab:green", ls="--", label="target 1.05")
    bottom.set_ylabel("preemptible / plain")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xticks(range(len(names)))
    bottom.set_xticklabels(names, rotation=45, ha="right")
    for ax in (top, bottom):
        for i in range(1, len(names)):
            ax.axvline(i - 0.5, color="lightgray", lw=0.5)
    summary = results.get("summary") or summarize(rows)
    device = results.get("device", {}).get("name", "?")
    fig.suptitle(
        f"reefd kernels vs torch eager on {device}, batch {results.get('batch', '?')}"
        f": geomean ours/torch {num(summary['ratio']['geomean_weighted'], 3)} "
        f"weighted, {num(summary['ratio']['geomean_unweighted'], 3)} unweighted"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def band_positions(rows: Sequence[Row]) -> tuple[list[float], list[str]]:
    """An x per row: kernel i's calls spread evenly over [i - 0.4, i + 0.4]."""
    names = sorted({r.kernel for r in rows})
    index = {name: i for i, name in enumerate(names)}
    totals = {name: sum(1 for r in rows if r.kernel == name) for name in names}
    seen: dict[str, int] = {}
    xs = []
    for r in rows:
        j = seen.get(r.kernel, 0)
        seen[r.kernel] = j + 1
        xs.append(index[r.kernel] - 0.4 + 0.8 * (j + 0.5) / totals[r.kernel])
    return xs, names


def try_plot(results: Mapping[str, Any], path: Path) -> str:
    """Plot if matplotlib imports; else say how to plot later."""
    if importlib.util.find_spec("matplotlib") is None:
        return (
            "matplotlib is missing: no PNG; plot later on any machine with "
            "`python -m bench.kernels --plot RESULTS.json`"
        )
    return f"wrote {plot(results, path)}"
