"""matplotlib for the live benches: imported only when drawing, Agg backend,
and a clear message instead of a PNG where it is not installed (the JSON is
always written; `--plot RESULTS.json` draws it later on any machine)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any


def try_plot(
    draw: Callable[[Any, dict[str, Any]], Any], results: dict[str, Any], path: Path
) -> str:
    """`draw(plt, results)` returns a figure, saved to `path`; returns what
    happened, for the log."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is missing: no PNG (draw it later with --plot RESULTS.json)"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"
