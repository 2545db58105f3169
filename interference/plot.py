"""The evaluation plot: one PNG with three panels.

Owns drawing an evaluate.py Report: held-out predicted versus measured RT
slowdown for the learned model and the baselines (log axes, the diagonal and
the SLO threshold drawn), MAPE per predictor with the noise floor as a dashed
line, and top-1 regret per predictor. Draws with matplotlib's Agg canvas
directly (no pyplot, no global backend switch), so it runs headless.

Imports matplotlib (lazily: a missing matplotlib is an InterferenceError
saying so) and this package's evaluate and errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reefd.interference.errors import InterferenceError
from reefd.interference.evaluate import Report

SCATTERED = (
    "learned",
    "conservative",
    "mean slowdown",
    "linear (gpulet)",
    "complementarity (Usher)",
    "class rule (Orion)",
)
MARKERS = "os^vDx"


def write_plot(report: Report, path: str | Path) -> Path:
    """Draw `report` into a PNG at `path`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InterferenceError(
            "writing the plot needs matplotlib (pip install matplotlib); "
            "or pass --no-plot"
        ) from None
    path = Path(path)
    fig = Figure(figsize=(15, 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    scatter, mape, regret = fig.subplots(1, 3, width_ratios=(1.3, 1, 1))
    _scatter(scatter, report)
    names = [s.predictor for s in report.scores]
    _bars(mape, names, [s.mape_pct for s in report.scores], "MAPE % (held out)")
    if not math.isnan(report.noise.mape_pct):
        mape.axvline(report.noise.mape_pct, ls="--", c="grey", label="noise floor")
        mape.legend(loc="lower right", fontsize=8)
    _bars(regret, names, [s.top1_regret for s in report.scores], "top-1 regret")
    regret.set_yticklabels([])
    fig.suptitle("\n".join(report.summary()), fontsize=9)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InterferenceError(f"cannot write the plot to {path}: {exc}") from None
    return path


def _scatter(ax: Any, report: Report) -> None:
    rows = report.data.rows
    values: list[float] = []
    for name, marker in zip(SCATTERED, MARKERS, strict=True):
        held = [h for h in report.held if h.predictor == name]
        if not held:
            continue
        x = [rows[h.row].rt_slowdown for h in held]
        y = [h.rt_slowdown for h in held]
        values += x + y
        ax.scatter(x, y, s=18, marker=marker, alpha=0.7, label=name)
    positive = [v for v in values if v > 0]
    lo, hi = min(positive, default=0.5), max(positive, default=2.0)
    lo, hi = lo / 1.1, hi * 1.1
    ax.plot([lo, hi], [lo, hi], c="black", lw=0.8)
    slo = report.config.slo_slowdown
    ax.axhline(slo, ls=":", c="red", lw=0.8)
    ax.axvline(slo, ls=":", c="red", lw=0.8, label=f"SLO {slo:.2f}")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
    ax.set_xlabel("measured RT slowdown")
    ax.set_ylabel("predicted RT slowdown (held out)")
    ax.legend(fontsize=7, loc="best")


def _bars(ax: Any, names: list[str], values: list[float], title: str) -> None:
    shown = [0.0 if math.isnan(v) else v for v in values]
    ax.barh(range(len(names)), shown, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
