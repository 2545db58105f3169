"""The results as text and JSON: the markdown tables (every call, per kernel),
the summary lines, and the results file (strict JSON, written atomically)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.kernel_bench.rows import Row, summarize

SCHEMA = "reefd.bench.kernels/1"


def num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_table(rows: Sequence[Row]) -> str:
    """Markdown: one line per call."""
    head = (
        "| kernel | shape | count | kind | ours us | torch us (ref incl. copy) "
        "| copy us | ours/torch | ours/(torch-copy) | preempt/plain (dev flag) "
        "| preempt/plain (mapped flag) | floor us | rel err | note |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        note = r.error or r.note
        if not r.error and not r.correct:
            note = f"WRONG (rel err {num(r.rel_err, 3)}) {note}".strip()
        if r.preempt_exact is False:
            note = f"preemptible != plain bitwise {note}".strip()
        lines.append(
            f"| {r.kernel} | {r.shape} | {r.count} | {r.kind} | {num(r.ours_us)} "
            f"| {num(r.torch_us)} | {num(r.copy_us)} | {num(r.ratio, 2)} "
            f"| {num(r.ratio_no_copy, 2)} | {num(r.preempt_ratio, 3)} "
            f"| {num(r.preempt_mapped_ratio, 3)} | {num(r.floor_us)} "
            f"| {'n/a' if r.rel_err is None else f'{r.rel_err:.1e}'} | {note} |"
        )
    return "\n".join(lines)


def format_by_kernel(entries: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one line per kernel (ratios are geomeans weighted by count)."""
    lines = [
        "| kernel | distinct calls | zoo count | bad | ours ms (x count) "
        "| torch ms (x count) | ours/torch | ours/(torch-copy) | max preempt/plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['kernel']} | {e['calls']} | {e['count']} | {e['bad']} "
            f"| {e['ours_us_total'] / 1000:.2f} | {e['torch_us_total'] / 1000:.2f} "
            f"| {num(e['ratio'], 2)} | {num(e['ratio_no_copy'], 2)} "
            f"| {num(e['preempt_max'], 3)} |"
        )
    return "\n".join(lines)


def format_summary(summary: Mapping[str, Any]) -> str:
    r, n = summary["ratio"], summary["ratio_no_copy"]
    p, m = summary["preempt_max"], summary["preempt_mapped_max"]
    target = summary["target_ratio"]
    return "\n".join(
        [
            f"calls: {summary['rows']} distinct; {summary['errors']} failed and "
            f"{summary['wrong']} with wrong results (left out of every mean), "
            f"{summary['preempt_not_exact']} preemptible not bit-exact (left out "
            "of the preemptible figures)",
            f"ours/torch (torch incl. its copy into y), geomean over {r['calls']} "
            f"calls: weighted by zoo count {num(r['geomean_weighted'], 3)}, "
            f"unweighted {num(r['geomean_unweighted'], 3)} (target <= {target})",
            f"ours/(torch - copy), geomean over {n['calls']} calls: weighted "
            f"{num(n['geomean_weighted'], 3)}, unweighted "
            f"{num(n['geomean_unweighted'], 3)}",
            f"preemptible/plain, device flag: max {num(p['ratio'], 3)} "
            f"({p['kernel']} {p['shape']}), weighted geomean "
            f"{num(p.get('geomean_weighted'), 3)}, "
            f"{p.get('over_target', 0)} calls over {summary['target_preempt']}",
            f"preemptible/plain, mapped host flag: max {num(m['ratio'], 3)} "
            f"({m['kernel']} {m['shape']}), weighted geomean "
            f"{num(m.get('geomean_weighted'), 3)}, "
            f"{m.get('over_target', 0)} calls over {summary['target_preempt']}",
        ]
    )


def results_json(
    meta: Mapping[str, Any], rows: Sequence[Row], complete: bool
) -> dict[str, Any]:
    """The JSON file: metadata, every row, the summary."""
    return {
        "schema": SCHEMA,
        **meta,
        "complete": complete,
        "summary": summarize(rows),
        "rows": [asdict(r) for r in rows],
    }


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(finite(data), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
