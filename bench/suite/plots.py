"""The suite's PNGs, drawn from a results dict (matplotlib through
bench.live.plotting: Agg, and a message instead of a PNG without it).

- latency_cdf.png: every case's RT latency CDF, and below it 1 - CDF on a log
  axis down to 1e-3, where p99 and p99.9 live (identical curves overlap: the
  legend gives each case's p99);
- be_throughput.png: BE requests/s per case, stacked per BE client, each bar
  labelled with its ratio to the be-alone case (dashed line);
- timeline.png: one second of one case, a lane per client, RT red, BE blue;
  kernels on the simulator, requests (send to return) on live backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.live.plotting import try_plot
from bench.suite.figures import be_per_s, rt_latencies_ms
from bench.suite.records import CaseRecord

RT_COLOR, BE_COLOR = "tab:red", "tab:blue"


def write_plots(
    results: dict[str, Any], cases: Sequence[CaseRecord], out: Path
) -> list[str]:
    """Draw the three PNGs into `out`; what happened to each, for the log."""
    return [
        try_plot(lambda plt, r: _cdf(plt, r, cases), results, out / "latency_cdf.png"),
        try_plot(lambda plt, r: _be(plt, r, cases), results, out / "be_throughput.png"),
        try_plot(
            lambda plt, r: _timeline(plt, r, cases), results, out / "timeline.png"
        ),
    ]


def _title(results: dict[str, Any], what: str) -> str:
    meta, wl, opts = results["meta"], results["workload"], results["options"]
    reduced = ", reduced models" if opts["reduced"] else ""
    note = "" if meta["gpu_figures"] else "\nNOT GPU figures: compare cases only"
    return (
        f"{what}: workload {wl['name']}, {opts['duration_s']:g} s per case{reduced}\n"
        f"{meta['backend']}: {meta['device'][:90]}{note}"
    )


def _style(label: str, i: int) -> dict[str, Any]:
    if label == "rt-alone":
        return {"color": "black", "ls": "--", "lw": 1.2}
    if label == "eager":
        return {"color": "dimgray", "ls": ":", "lw": 1.5}
    return {"color": f"C{i % 10}", "lw": 1.3}


def _cdf(plt: Any, results: dict[str, Any], cases: Sequence[CaseRecord]) -> Any:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for i, case in enumerate(cases):
        xs = sorted(rt_latencies_ms(case))
        if not xs or case.error:
            continue
        n = len(xs)
        ys = [(k + 1) / n for k in range(n)]
        tail = [max(1 - y, 0.5 / n) for y in ys]
        style = _style(case.label, i)
        p99 = xs[min(n - 1, int(0.99 * n))]
        label = f"{case.label} (n={n}, p99 {p99:.3g} ms)"
        top.step(xs, ys, where="post", label=label, **style)
        bottom.step(xs, tail, where="post", **style)
    top.set_ylabel("fraction of RT requests")
    top.legend(fontsize=7, loc="lower right")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylim(5e-4, 1.0)
    for q, text in ((1e-2, "p99"), (1e-3, "p99.9")):
        bottom.axhline(q, color="gray", lw=0.6, ls=":")
        bottom.annotate(text, (0.01, q), xycoords=("axes fraction", "data"), fontsize=7)
    bottom.set_ylabel("1 - CDF (log)")
    bottom.set_xlabel("RT latency, ms (log)")
    bottom.set_xscale("log")
    bottom.grid(alpha=0.3)
    fig.suptitle(_title(results, "RT latency CDF"), fontsize=9)
    fig.tight_layout()
    return fig


def _be(plt: Any, results: dict[str, Any], cases: Sequence[CaseRecord]) -> Any:
    shown = [c for c in cases if c.by_priority("be") or c.error]
    shown = [c for c in shown if c.label != "rt-alone"]
    alone = next((c for c in cases if c.label == "be-alone"), None)
    base = be_per_s(alone) if alone else None
    names = list(dict.fromkeys(b.name for c in shown for b in c.by_priority("be")))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(shown) + 2), 5))
    bottoms = [0.0] * len(shown)
    for j, name in enumerate(names):
        heights = []
        for c in shown:
            client = next((b for b in c.by_priority("be") if b.name == name), None)
            heights.append(client.done / c.duration_s if client else 0.0)
        ax.bar(
            range(len(shown)), heights, bottom=bottoms, label=name, color=f"C{j % 10}"
        )
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for i, c in enumerate(shown):
        total = be_per_s(c)
        text = "failed" if c.error else f"{total or 0:.1f}"
        if total is not None and base:
            text += f"\n{total / base:.2f}x"
        ax.annotate(text, (i, bottoms[i]), ha="center", va="bottom", fontsize=7)
    if base:
        ax.axhline(base, color="black", ls="--", lw=0.8, label="be-alone")
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels([c.label for c in shown], rotation=30, ha="right")
    ax.set_ylabel("BE requests / s")
    ax.set_ylim(0, 1.25 * max([*bottoms, base or 0, 1e-9]))
    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(_title(results, "BE throughput"), fontsize=9)
    fig.tight_layout()
    return fig


def _timeline(plt: Any, results: dict[str, Any], cases: Sequence[CaseRecord]) -> Any:
    case = next((c for c in cases if c.timeline_window_s is not None), None)
    height = 1.6 + 0.5 * max(1, _lanes(case))
    if case is None or case.timeline_window_s is None:
        fig, ax = plt.subplots(figsize=(12, height))
        ax.text(0.5, 0.5, "no timeline recorded in this run", ha="center")
        ax.set_axis_off()
        return fig
    fig, (whole, zoom) = plt.subplots(2, 1, figsize=(12, 2 * height))
    lo, hi = (x * 1e3 for x in case.timeline_window_s)
    _lanes_on(whole, case, lo, hi)
    rt = sorted(s.start_ms for s in case.timeline if s.priority == "rt")
    z0 = max(lo, (rt[0] if rt else lo) - ZOOM_LEAD_MS)
    _lanes_on(zoom, case, z0, min(hi, z0 + ZOOM_MS))
    zoom.set_xlabel("ms since the measured window began")
    whole.set_title("one second", fontsize=8)
    zoom.set_title(f"{ZOOM_MS:g} ms from just before an RT request", fontsize=8)
    what = f"Timeline of case {case.label}: {case.timeline_kind}"
    fig.suptitle(_title(results, what), fontsize=8)
    fig.tight_layout()
    return fig


ZOOM_MS = 25.0
ZOOM_LEAD_MS = 2.0


def _lanes_on(ax: Any, case: CaseRecord, lo: float, hi: float) -> None:
    """One lane per client between lo and hi ms; a bar narrower than a
    pixel is drawn a pixel wide (it would vanish otherwise)."""
    lanes = [c.name for c in case.clients]
    min_ms = (hi - lo) / 1000
    for y, lane in enumerate(lanes):
        spans = [s for s in case.timeline if s.lane == lane]
        spans = [s for s in spans if s.end_ms > lo and s.start_ms < hi]
        if not spans:
            continue
        color = RT_COLOR if spans[0].priority == "rt" else BE_COLOR
        bars = [(s.start_ms, max(s.end_ms - s.start_ms, min_ms)) for s in spans]
        ax.broken_barh(bars, (y - 0.35, 0.7), color=color, lw=0, antialiased=False)
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes, fontsize=7)


def _lanes(case: CaseRecord | None) -> int:
    return 0 if case is None else len(case.clients)
