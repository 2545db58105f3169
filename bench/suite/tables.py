"""The suite's markdown: a heading that says what ran where, the summary
table (one row per case, each figure beside its ratio to running alone), and
the per-client table. Renders from the results dict, so a results file can
be re-rendered anywhere (`python -m bench plot`). Pure text; no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.live.report import cell, markdown
from bench.suite.figures import CaseFigures, case_figures
from bench.suite.records import CaseRecord


def _x(value: float | None, base_ratio: float | None, digits: int = 2) -> str:
    text = cell(value, digits)
    if value is None or base_ratio is None:
        return text
    return f"{text} ({base_ratio:.2f}x)"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def summary_table(figs: Sequence[CaseFigures]) -> str:
    head = [
        "case",
        "policy",
        "RT p50 ms (x alone)",
        "RT p99 ms (x alone)",
        "RT p99.9 ms (x alone)",
        "RT SLO %",
        "RT done/skipped",
        "BE req/s (x alone)",
        "preemptions",
        "preempt p50/p99/max us",
        "GPU util %",
    ]
    rows = []
    for f in figs:
        if f.error:
            why = f"FAILED: {f.error.splitlines()[0][:70]}"
            rows.append([f.label, f.policy, why, *[""] * (len(head) - 3)])
            continue
        pre = "/".join(cell(v, 0) for v in f.preempt_us)
        rows.append(
            [
                f.label,
                f.policy,
                *(_x(v, r) for v, r in zip(f.rt_ms, f.rt_x_alone, strict=True)),
                _pct(f.rt_slo_attainment),
                "-" if f.rt_done is None else f"{f.rt_done}/{f.rt_skipped}",
                _x(f.be_per_s, f.be_x_alone, 1),
                "n/a" if f.preemptions is None else str(f.preemptions),
                "n/a" if f.preemptions is None else pre,
                _pct(f.util) if f.util is not None else "n/a",
            ]
        )
    return markdown(head, rows)


def client_table(cases: Sequence[CaseRecord]) -> str:
    head = ["case", "client", "arrival", "done", "skipped", "p50 ms", "p99 ms"]
    head += ["p99.9 ms", "SLO ms", "SLO %", "req/s"]
    rows = []
    for case in cases:
        for c in case.clients:
            rows.append(
                [
                    case.label,
                    c.name,
                    c.arrival,
                    str(c.done),
                    str(c.skipped),
                    cell(c.percentile_ms(50)),
                    cell(c.percentile_ms(99)),
                    cell(c.percentile_ms(99.9)),
                    cell(c.slo_ms),
                    _pct(c.slo_attainment),
                    cell(c.done / case.duration_s, 1),
                ]
            )
    return markdown(head, rows)


def heading(results: dict[str, Any]) -> str:
    meta, opts, wl = results["meta"], results["options"], results["workload"]
    lines = [
        f"## Workload {wl['name']}: {wl['description']}",
        "",
        f"- backend: {meta['backend']}; device: {meta['device']}",
        f"- {meta['note']}",
        f"- {opts['duration_s']:g} s per case"
        + (", reduced models" if opts["reduced"] else ", full-size models")
        + f", batch 1, seed {opts['seed']}; SLO: {results['slo_rule']}",
        f"- date {meta['date']}; host {meta['host']} ({meta['cpus']} CPUs); "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- command: `{meta['command']}`",
    ]
    lines += [f"- trace {name}: {line}" for name, line in wl.get("traces", {}).items()]
    lines += [f"- {note}" for note in results.get("notes", ())]
    return "\n".join(lines)


def render(results: dict[str, Any], cases: Sequence[CaseRecord]) -> str:
    """The whole markdown report of a run."""
    return "\n\n".join(
        [
            heading(results),
            "### Per case\n\n" + summary_table(case_figures(cases)),
            "Ratios in brackets: RT over the rt-alone case, BE over the be-alone "
            "case of this run. SLO % counts skipped arrivals as misses. "
            f"GPU util: {_util_sources(cases)}.",
            "### Per client\n\n" + client_table(cases),
        ]
    )


def _util_sources(cases: Sequence[CaseRecord]) -> str:
    sources = dict.fromkeys(c.util_source for c in cases if not c.error)
    return "; ".join(sources) or "n/a"
