"""Reading the store back for people: `show` tables and `export` CSV files.

Owns the text tables `reef-profile show` prints (solo tasks, one model's calls,
pairs) and the CSV `reef-profile export` writes (one row per task, call or
pair, each tagged with its run's device, versions and backend: the store's
views). Imports the standard library and this package's store only.
"""

from __future__ import annotations

import csv
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from reefd.errors import ConfigError
from reefd.profiler.store import Store


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, a rule under the header."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [head, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _spread(row: sqlite3.Row, prefix: str = "") -> str:
    median = row[f"{prefix}median_us"]
    if not median:
        return "-"
    return f"{100.0 * (row[f'{prefix}p90_us'] - row[f'{prefix}p10_us']) / median:.1f}"


def _device(row: sqlite3.Row) -> str:
    return f"{row['backend']}: {row['device_name']}"


def tasks_table(rows: Sequence[sqlite3.Row]) -> str:
    gpu = any(r["sm_clock_mhz"] is not None for r in rows)
    head = ["task", "model", "batch", "device", "calls", "median ms", "p10-p90 %"]
    head += ["GFLOP", "MB moved", "measured"]
    if gpu:
        head += ["SM MHz", "power W", "SM occ %", "DRAM bw %"]
    cells = []
    for r in rows:
        line = [
            str(r["task_id"]),
            r["model"],
            str(r["batch"]),
            _device(r),
            str(r["n_calls"]),
            f"{r['median_us'] / 1000:.2f}",
            _spread(r),
            f"{r['flops'] / 1e9:.2f}",
            f"{r['bytes_moved'] / 1e6:.1f}",
            r["measured_at"],
        ]
        if gpu:
            line += [
                _num(r["sm_clock_mhz"], 0),
                _num(r["power_w"]),
                _num(r["sm_occupancy_pct"]),
                _num(r["dram_bw_util_pct"]),
            ]
        cells.append(line)
    return format_table(head, cells)


def calls_table(rows: Sequence[sqlite3.Row], task_median_us: float) -> str:
    head = ["idx", "kernel", "variant", "form", "n_vb", "CTAs/SM", "regs", "smem B"]
    head += ["MFLOP", "KB moved", "median us", "p10-p90 %", "share %"]
    cells = [
        [
            str(r["call_index"]),
            r["kernel"],
            r["variant"],
            r["form"],
            str(r["n_vb"]),
            _num(r["ctas_per_sm"], 0),
            _num(r["registers"], 0),
            _num(r["smem_bytes"], 0),
            f"{r['flops'] / 1e6:.1f}",
            f"{r['bytes_moved'] / 1e3:.1f}",
            f"{r['median_us']:.1f}",
            _spread(r),
            f"{100.0 * r['median_us'] / task_median_us:.1f}" if task_median_us else "-",
        ]
        for r in rows
    ]
    return format_table(head, cells)


def _ratio(row: sqlite3.Row, side: str) -> str:
    return (
        f"{row[f'{side}_slowdown']:.3f} "
        f"[{row[f'{side}_slowdown_low']:.3f}, {row[f'{side}_slowdown_high']:.3f}]"
    )


def pairs_table(rows: Sequence[sqlite3.Row]) -> str:
    head = ["pair", "RT model", "b", "BE model", "b", "device"]
    head += ["RT alone ms", "RT together ms", "RT slowdown [90% CI]"]
    head += ["BE alone ms", "BE together ms", "BE slowdown [90% CI]", "measured"]
    cells = [
        [
            str(r["pair_id"]),
            r["rt_model"],
            str(r["rt_batch"]),
            r["be_model"],
            str(r["be_batch"]),
            _device(r),
            f"{r['rt_alone_median_us'] / 1000:.2f}",
            f"{r['rt_together_median_us'] / 1000:.2f}",
            _ratio(r, "rt"),
            f"{r['be_alone_median_us'] / 1000:.2f}",
            f"{r['be_together_median_us'] / 1000:.2f}",
            _ratio(r, "be"),
            r["measured_at"],
        ]
        for r in rows
    ]
    return format_table(head, cells)


def show(store: Store, model: str | None = None) -> str:
    """Everything stored (or everything about `model`), as text."""
    counts = store.counts()
    out = [
        f"store {store.path} (schema v{store.schema_version()}): "
        + ", ".join(f"{n} {name}" for name, n in counts.items())
    ]
    if model is not None and not store.model_keys(model):
        raise ConfigError(f"--model {model!r}: no such model in {store.path}")
    _, tasks = store.rows("tasks", model)
    _, pairs = store.rows("pairs", model)
    if tasks:
        out += ["", "solo tasks (durations: median of the repeats)", tasks_table(tasks)]
    if model is not None:
        latest: dict[tuple[int, str, str], sqlite3.Row] = {}
        for t in tasks:
            latest[(t["batch"], t["backend"], t["device_name"])] = t
        for t in latest.values():
            _, calls = store.rows("calls", task_id=t["task_id"])
            out += [
                "",
                f"{t['model']} batch {t['batch']} on {_device(t)} (task "
                f"{t['task_id']}, {t['measured_at']}): {len(calls)} calls",
                calls_table(calls, t["median_us"]),
            ]
    if pairs:
        out += [
            "",
            "co-run pairs (slowdown = median together / median alone)",
            pairs_table(pairs),
        ]
        methods = sorted({p["method"] for p in pairs})
        out += [f"method: {m}" for m in methods]
    if not tasks and not pairs:
        out.append("nothing measured yet: run `reef-profile run --zoo NAME`")
    return "\n".join(out)


def export_csv(store: Store, table: str, path: str, model: str | None = None) -> int:
    """Write `table`'s tagged rows as CSV to `path` ('-': stdout); row count."""
    columns, rows = store.rows(table, model)
    if path == "-":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(tuple(r) for r in rows)
        return len(rows)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(tuple(r) for r in rows)
    return len(rows)
