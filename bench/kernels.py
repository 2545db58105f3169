"""Kernel speed on a GPU: every (kernel, shape) the zoo uses, ours vs torch eager.

Owns the kernel benchmark. It lowers every zoo model (full size, batch 8 by
default, DistilBERT at seq 128) with `reefd.clients.lower.lower` on the CPU and
collects the distinct calls (kernel, params, bound operands) with how often
each occurs. Then, for each call on the GPU, on random operands:

- ours: the plain form (one CTA per virtual block) and the preemptible form on
  the persistent grid the daemon would use (SMs x CTAs per SM at full
  occupancy, CTAs/SM from ptxas's registers and shared memory as
  `python -m reefd.kernels check` computes them, capped at the block count),
  with the preempt flag in device memory and in mapped host memory;
- torch eager: the spec's torch `reference` on CUDA tensors, which ends with a
  copy into the output buffer, and that copy alone (`y.copy_(tmp)`), so the
  ratio is reported with and without it; for the data-movement kernels
  (copy, strided_copy, cast_i64) the copy is the op, so both ratios are equal;
- a correctness check first: plain vs torch (relative L2 error), preemptible
  vs plain (bit for bit); a wrong call is timed but left out of the means.

Timing follows .library/device/METHOD.md: CUDA events around each run, warm-up
runs first, the median of N runs, the L2 cache flushed (a buffer of twice its
size zeroed) before every run so operands come from device memory, and the
host kept ahead of the GPU (a GPU sleep before each chunk of runs; see
`Timer`), so host launch costs stay out. float32 matmuls and convolutions in
torch run with TF32 off (torch.backends.cuda.matmul.allow_tf32 =
torch.backends.cudnn.allow_tf32 = False); a call our library runs in TF32 (bmm
precision "tf32") is compared with torch in TF32. A floor per call comes from
measured ceilings (a 512 MiB device-to-device copy, an 8192^3 matmul per
precision): max(flops / rate, bytes / bandwidth).

    python -m bench.kernels [--models resnet50 vit_b16] [--batch 8] [--repeat 50]
    python -m bench.kernels --collect-only --out DIR   # CPU: write DIR/shapes.json
    python -m bench.kernels --shapes DIR/shapes.json   # GPU: skip the lowering
    python -m bench.kernels --plot DIR/kernels.json    # PNG from results, any host

Writes OUT/kernels.json (device, versions, command, settings, ceilings, every
row, the summary; also rewritten every 15 s while measuring, so a run cut short
keeps what it measured), OUT/kernels.md (every call, per kernel, summary) and
OUT/kernels.png (needs matplotlib; without it the JSON is still written and
`--plot` draws it on another machine). Progress goes to stderr; the per-kernel
table and the summary to stdout, last. Without a GPU, cuda.bindings or NVRTC it
exits 2 with a message naming what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import reefd
from bench import zoo
from reefd.errors import BackendError
from reefd.kernels import catalog
from reefd.kernels.spec import TORCH_DTYPE, KernelSpec

if TYPE_CHECKING:
    from reefd.graph import KernelCall
    from reefd.kernels.launcher import Launcher
    from reefd.kernels.wrappers import EntryPoint

SCHEMA = "reefd.bench.kernels/1"
SHAPES_SCHEMA = "reefd.bench.kernels.shapes/1"
DEFAULT_OUT = Path("bench/out/kernels")
DATA_MOVEMENT = frozenset({"copy", "strided_copy", "cast_i64"})
"""Kernels whose torch reference is a copy and nothing else."""
TARGET_RATIO = 1.25
"""docs/gpu-owed.md: geomean ours/torch <= 1.25."""
TARGET_PREEMPT = 1.05
"""docs/gpu-owed.md: preemptible vs plain overhead <= 5 %."""
TF32_SETTING = (
    "torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False"
)
TIMING = (
    "CUDA events around each run on torch's current stream; L2 flushed before "
    "every run (a buffer of 2x L2 zeroed); host kept ahead of the GPU; median"
)
TOLERANCE = {"fp32": 1e-3, "tf32": 5e-3, "bf16": 2e-2, "f16": 1e-2}
"""Largest relative L2 error of a correct call, by the precision it computes in."""


DEVICE = "cuda"
"""Where operands live (a CPU dry run of the row logic in tests sets "cpu")."""


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the zoo's calls -------------------------------------------------------------


@dataclass(frozen=True)
class ZooCall:
    """One distinct call: a kernel, its params (defaults filled in, JSON form),
    the operands bound in the graph, and how often the zoo makes it."""

    kernel: str
    params: dict[str, Any]
    bound: tuple[str, ...]
    count: int = 0
    models: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return call_key(self.kernel, self.params, self.bound)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def canonical_params(spec: KernelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params with defaults filled in, `ints` as lists (JSON round-trips it)."""
    return {k: _jsonable(v) for k, v in spec.with_defaults(params).items()}


def call_key(kernel: str, params: Mapping[str, Any], bound: Sequence[str]) -> str:
    return json.dumps([kernel, params, sorted(bound)], sort_keys=True)


def lower_model(name: str, batch: int, **overrides: Any) -> list[KernelCall]:
    """The kernel calls of one zoo model lowered on the CPU."""
    from reefd.clients.lower import lower

    model, inputs = zoo.build(name, batch=batch, **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return list(lower(model, inputs, name=name).graph.calls)


def collect(graphs: Sequence[tuple[str, Sequence[KernelCall]]]) -> list[ZooCall]:
    """Distinct calls over (model name, calls) pairs, with counts, sorted by
    kernel and then most frequent first."""
    found: dict[str, ZooCall] = {}
    for model, calls in graphs:
        for call in calls:
            spec = catalog.get(call.kernel)
            params = canonical_params(spec, call.params)
            bound = tuple(op.name for op in spec.operands if op.name in call.args)
            key = call_key(call.kernel, params, bound)
            old = found.get(key) or ZooCall(call.kernel, params, bound)
            models = dict(old.models)
            models[model] = models.get(model, 0) + 1
            found[key] = replace(old, count=old.count + 1, models=models)
    return sorted(found.values(), key=lambda c: (c.kernel, -c.count))


def lower_zoo(
    models: Sequence[str], batch: int
) -> tuple[list[ZooCall], dict[str, str]]:
    """Lower every model (progress on stderr) and collect its distinct calls;
    a model that fails to lower is reported (model -> error) and skipped."""
    graphs = []
    failures: dict[str, str] = {}
    for i, name in enumerate(models, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(models)}] lowering {name} (batch {batch}) ...")
        try:
            calls = lower_model(name, batch)
        except Exception as exc:  # reported; the other models still run
            failures[name] = f"{type(exc).__name__}: {exc}"
            log(f"[{i}/{len(models)}] {name}: lowering FAILED: {failures[name]}")
            continue
        distinct = len(collect([(name, calls)]))
        log(
            f"[{i}/{len(models)}] {name}: {len(calls)} calls, {distinct} distinct "
            f"({time.perf_counter() - start:.1f} s)"
        )
        graphs.append((name, calls))
    return collect(graphs), failures


def shapes_json(
    calls: Sequence[ZooCall],
    models: Sequence[str],
    batch: int,
    failures: Mapping[str, str] | None = None,
) -> dict:
    return {
        "schema": SHAPES_SCHEMA,
        "models": list(models),
        "batch": batch,
        "torch": torch.__version__,
        "lowering_failures": dict(failures or {}),
        "calls": [asdict(c) for c in calls],
    }


def read_shapes(path: Path) -> tuple[list[ZooCall], dict[str, Any]]:
    """Calls from a `--collect-only` file, and its header."""
    data = json.loads(path.read_text())
    if data.get("schema") != SHAPES_SCHEMA:
        raise ValueError(f"{path}: not a shapes file (schema {data.get('schema')!r})")
    calls = [
        ZooCall(c["kernel"], c["params"], tuple(c["bound"]), c["count"], c["models"])
        for c in data["calls"]
    ]
    return calls, {k: v for k, v in data.items() if k != "calls"}


def describe(spec: KernelSpec, params: Mapping[str, Any], bound: Sequence[str]) -> str:
    """A shape summary: operand shapes (read -> written), then the params that
    are not dimensions (required ints) and differ from their defaults."""

    def dims(shape: Sequence[int]) -> str:
        return "x".join(map(str, shape))

    shapes = spec.shapes(spec.with_defaults(params))
    reads = [o for o in spec.operands if o.access == "read" and o.name in bound]
    writes = [o for o in spec.operands if o.access == "write" and o.name in bound]
    text = " ".join(f"{o.name}[{dims(shapes[o.name])}]" for o in reads)
    text += " -> " + " ".join(f"{o.name}[{dims(shapes[o.name])}]" for o in writes)
    extras = []
    for p in spec.params:
        value = params.get(p.name)
        dimension = p.kind == "int" and p.required
        if dimension or value is None or _jsonable(p.default) == value:
            continue
        extras.append(f"{p.name}={dims(value) if p.kind == 'ints' else value}")
    return " ".join([text, *extras])


# --- a row of the table, and the summary -----------------------------------------


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


def _num(value: float | None, digits: int = 1) -> str:
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
            note = f"WRONG (rel err {_num(r.rel_err, 3)}) {note}".strip()
        if r.preempt_exact is False:
            note = f"preemptible != plain bitwise {note}".strip()
        lines.append(
            f"| {r.kernel} | {r.shape} | {r.count} | {r.kind} | {_num(r.ours_us)} "
            f"| {_num(r.torch_us)} | {_num(r.copy_us)} | {_num(r.ratio, 2)} "
            f"| {_num(r.ratio_no_copy, 2)} | {_num(r.preempt_ratio, 3)} "
            f"| {_num(r.preempt_mapped_ratio, 3)} | {_num(r.floor_us)} "
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
            f"| {_num(e['ratio'], 2)} | {_num(e['ratio_no_copy'], 2)} "
            f"| {_num(e['preempt_max'], 3)} |"
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
            f"calls: weighted by zoo count {_num(r['geomean_weighted'], 3)}, "
            f"unweighted {_num(r['geomean_unweighted'], 3)} (target <= {target})",
            f"ours/(torch - copy), geomean over {n['calls']} calls: weighted "
            f"{_num(n['geomean_weighted'], 3)}, unweighted "
            f"{_num(n['geomean_unweighted'], 3)}",
            f"preemptible/plain, device flag: max {_num(p['ratio'], 3)} "
            f"({p['kernel']} {p['shape']}), weighted geomean "
            f"{_num(p.get('geomean_weighted'), 3)}, "
            f"{p.get('over_target', 0)} calls over {summary['target_preempt']}",
            f"preemptible/plain, mapped host flag: max {_num(m['ratio'], 3)} "
            f"({m['kernel']} {m['shape']}), weighted geomean "
            f"{_num(m.get('geomean_weighted'), 3)}, "
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


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(finite(data), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


# --- the plot --------------------------------------------------------------------


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
        f": geomean ours/torch {_num(summary['ratio']['geomean_weighted'], 3)} "
        f"weighted, {_num(summary['ratio']['geomean_unweighted'], 3)} unweighted"
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


# --- the GPU side ----------------------------------------------------------------


def missing_gpu_support() -> str | None:
    """Why the timing cannot run here (None when it can)."""
    try:
        import cuda.bindings.driver  # noqa: F401
    except ImportError as exc:
        return (
            f"cuda.bindings is not importable ({exc}); install the driver bindings "
            "with `pip install 'reefd[cuda]'`"
        )
    if not torch.cuda.is_available():
        return (
            f"torch {torch.__version__} sees no CUDA device (built for CUDA "
            f"{torch.version.cuda or 'none: a CPU-only build'})"
        )
    from reefd.errors import CompileError
    from reefd.kernels.nvrtc import nvrtc_version

    try:
        nvrtc_version()
    except CompileError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Timing:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int


class Timer:
    """Median GPU time of a callable: warm-up runs, then up to `repeat` runs
    (fewer when one run is long: about `budget_s` in all, at least `min_runs`),
    each between two CUDA events, after an L2 flush.

    The host is kept ahead of the GPU: before each chunk of runs the GPU sleeps
    (torch.cuda._sleep) 1.5x as long as the host took to queue that many runs
    in the warm-up, so every run's kernels are queued before its start event
    executes and host launch costs stay out of the times.
    """

    CHUNK = 16

    def __init__(
        self,
        repeat: int,
        warmup: int,
        flush_bytes: int,
        budget_s: float = 0.5,
        min_runs: int = 10,
    ) -> None:
        self.repeat, self.warmup = repeat, max(1, warmup)
        self.budget_s, self.min_runs = budget_s, min(min_runs, repeat)
        self.cache = (
            torch.empty(flush_bytes // 4, dtype=torch.int32, device="cuda")
            if flush_bytes
            else None
        )
        self.cycles_per_us = self._calibrate_sleep()

    @staticmethod
    def _calibrate_sleep() -> float:
        """GPU clock cycles per us of torch.cuda._sleep (0: not available)."""
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is None:
            return 0.0
        cycles = 1_000_000
        elapsed = []
        for _ in range(3):
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            sleep(cycles)
            end.record()
            torch.cuda.synchronize()
            elapsed.append(start.elapsed_time(end) * 1000.0)
        return cycles / max(min(elapsed), 1.0)

    @property
    def host_ahead(self) -> str:
        if not self.cycles_per_us:
            return "no torch.cuda._sleep: host launch gaps may be in the times"
        return (
            f"torch.cuda._sleep before every {self.CHUNK} runs, 1.5x the host's "
            f"queueing time ({self.cycles_per_us:.0f} cycles/us)"
        )

    def flush(self) -> None:
        if self.cache is not None:
            self.cache.zero_()

    def sleep(self, us: float) -> None:
        if self.cycles_per_us:
            cycles = int(min(us, 20_000.0) * self.cycles_per_us)
            torch.cuda._sleep(cycles)

    def measure(
        self, fn: Callable[[], Any], before: Callable[[], Any] | None = None
    ) -> Timing:
        start = time.perf_counter()
        for _ in range(self.warmup):
            if before:
                before()
            self.flush()
            fn()
        host_us = (time.perf_counter() - start) * 1e6 / self.warmup
        torch.cuda.synchronize()
        one = self._run(fn, before, 1, host_us)[0]
        runs = max(self.min_runs, min(self.repeat, int(self.budget_s * 1e6 / one)))
        times = sorted(self._run(fn, before, runs, host_us))
        q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
        return Timing(statistics.median(times), q[0], q[-1], len(times))

    def _run(
        self,
        fn: Callable[[], Any],
        before: Callable[[], Any] | None,
        runs: int,
        host_us: float,
    ) -> list[float]:
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(runs)
        ]
        for i, (start, end) in enumerate(events):
            if i % self.CHUNK == 0:
                self.sleep(1.5 * host_us * min(self.CHUNK, runs - i) + 20.0)
            if before:
                before()
            self.flush()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [max(start.elapsed_time(end) * 1000.0, 1e-3) for start, end in events]


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
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    shapes = spec.shapes(params)
    scale = _fan_in(spec, params)
    tensors = {}
    for op in spec.operands:
        if op.name not in bound:
            continue
        shape, dtype = shapes[op.name], TORCH_DTYPE[op.dtypes[0]]
        if op.access == "write":
            t = torch.empty(shape, dtype=dtype, device=DEVICE)
            t.fill_(math.nan if dtype.is_floating_point else -1)
        elif dtype.is_floating_point:
            t = torch.randn(shape, generator=gen, device=DEVICE)
            t = (t * scale.get(op.name, 1.0)).to(dtype)
        else:
            low, high = (0, params["vocab"]) if "vocab" in params else (-1000, 1000)
            t = torch.randint(
                low, high, shape, generator=gen, device=DEVICE, dtype=dtype
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


def measure_ceilings(timer: Timer, n: int = 8192) -> dict[str, float]:
    """Device-to-device copy bandwidth (bytes read + written per s) and dense
    matmul rates (flop/s) per precision, through torch on random data."""
    out: dict[str, float] = {}
    src = torch.randn(1 << 27, device="cuda")  # 512 MiB
    dst = torch.empty_like(src)
    t = timer.measure(lambda: dst.copy_(src)).median_us
    out["copy_bytes_per_s"] = 2 * src.nbytes / (t * 1e-6)
    src = dst = torch.empty(0)
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, False),
        ("f16", torch.float16, False),
    ):
        a = torch.randn(n, n, device="cuda").to(dtype)
        b = torch.randn(n, n, device="cuda").to(dtype)
        with torch_tf32(tf32):
            t = timer.measure(lambda a=a, b=b: torch.mm(a, b)).median_us
        out[f"{name}_flop_per_s"] = 2 * n**3 / (t * 1e-6)
    return out


def floor_us(flops: int, nbytes: int, rate: float, bandwidth: float) -> float:
    """The larger of the arithmetic time and the memory time, in us."""
    return max(flops / rate, nbytes / bandwidth) * 1e6


class Bench:
    """Measures calls on one GPU: compiles their entries, times every form."""

    def __init__(self, launcher: Launcher, timer: Timer, ceilings: dict[str, float]):
        self.gpu, self.timer, self.ceilings = launcher, timer, ceilings
        self.compile_errors: dict[str, str] = {}
        self.flag = torch.zeros(1, dtype=torch.int32, device=DEVICE)
        self.counter = torch.zeros(1, dtype=torch.int32, device=DEVICE)

    def compile(self, calls: Sequence[ZooCall], jobs: int) -> None:
        """Compile every call's plain and preemptible entries, `jobs` at a time."""
        from reefd.kernels.wrappers import EntryPoint

        groups: dict[str, list[EntryPoint]] = {}
        for call in calls:
            spec = catalog.get(call.kernel)
            plain = EntryPoint.plain(spec, call.params)
            groups.setdefault(
                plain.name, [plain, EntryPoint.preemptible(spec, call.params)]
            )
        start = time.perf_counter()

        def progress(done: int, total: int, group: Sequence[EntryPoint]) -> None:
            log(
                f"  compiled [{done}/{total}] {group[0].name} "
                f"({time.perf_counter() - start:.0f} s)"
            )

        log(f"compiling {len(groups)} modules for {self.gpu.arch}, {jobs} at a time")
        for group, exc in self.gpu.load(groups.values(), jobs, progress):
            for entry in group:
                self.compile_errors[entry.name] = f"compile failed: {exc}"

    def row(self, call: ZooCall, flag_mapped: int) -> Row:
        """Check and time one call; errors end up in `row.error`."""
        spec = catalog.get(call.kernel)
        row = Row(
            kernel=call.kernel,
            shape=describe(spec, call.params, call.bound),
            params=call.params,
            bound=list(call.bound),
            count=call.count,
            models=call.models,
            kind="move" if call.kernel in DATA_MOVEMENT else "compute",
        )
        try:
            self._measure(spec, call, row, flag_mapped)
        except Exception as exc:  # recorded in the row; run() stops if fatal
            row.error = f"{type(exc).__name__}: {exc}"
        return derive(row)

    def _measure(self, spec: KernelSpec, call: ZooCall, row: Row, mapped: int):
        from reefd.kernels.wrappers import EntryPoint

        params = spec.with_defaults(call.params)
        plain = EntryPoint.plain(spec, params)
        if plain.name in self.compile_errors:
            row.error = self.compile_errors[plain.name]
            return
        pre = EntryPoint.preemptible(spec, params)
        self._launch_facts(spec, params, call.bound, pre, row)
        forms = Forms(self, spec, params, call.bound, plain, pre, row)
        note = TORCH_OVERRIDES.get(spec.name, (None, ""))[1]
        if row.kind == "move":
            note = "data movement: torch's op is the copy itself"
        if row.precision == "tf32":
            note = f"{note}; torch in TF32 too".strip("; ")
        row.note = note
        with torch_tf32(row.precision == "tf32"):
            row.rel_err, row.preempt_exact = forms.check()
            timings = {
                "ours": self.timer.measure(forms.plain),
                "preempt": self.timer.measure(
                    forms.preemptible(self.flag.data_ptr()), self.counter.zero_
                ),
                "preempt_mapped": self.timer.measure(
                    forms.preemptible(mapped), self.counter.zero_
                ),
                "torch": self.timer.measure(forms.torch),
                "copy": self.timer.measure(forms.copy_out),
            }
        row.ours_us = timings["ours"].median_us
        row.preempt_us = timings["preempt"].median_us
        row.preempt_mapped_us = timings["preempt_mapped"].median_us
        row.torch_us = timings["torch"].median_us
        row.copy_us = timings["copy"].median_us
        row.spread_us = {k: [t.p10_us, t.p90_us] for k, t in timings.items()}
        row.runs = min(t.runs for t in timings.values())

    def _launch_facts(
        self,
        spec: KernelSpec,
        params: Mapping[str, Any],
        bound: Sequence[str],
        pre: EntryPoint,
        row: Row,
    ) -> None:
        """Blocks, persistent grid, occupancy, resources, work and floor."""
        res = self.gpu.resources(pre)
        row.variant, row.n_vb = spec.body(params), spec.virtual_blocks(params)
        row.grid = self.gpu.persistent_grid(pre, row.n_vb)
        row.ctas_per_sm = self.gpu.ctas_per_sm(pre)
        row.driver_ctas_per_sm = self.gpu.driver_ctas_per_sm(pre)
        row.registers = res.registers
        row.smem_bytes = res.static_smem_bytes + pre.dynamic_smem_bytes()
        dtypes = {o.name: o.dtypes[0] for o in spec.operands if o.name in bound}
        row.flops, row.bytes = spec.flops(params), spec.bytes_moved(params, dtypes)
        row.precision = precision(spec, params)
        row.floor_us = floor_us(
            row.flops,
            row.bytes,
            self.ceilings[f"{row.precision}_flop_per_s"],
            self.ceilings["copy_bytes_per_s"],
        )


class Forms:
    """One call's operands on the GPU and the ways to run it: our plain and
    preemptible forms, torch's reference, torch's copy into the outputs."""

    def __init__(
        self,
        bench: Bench,
        spec: KernelSpec,
        params: Mapping[str, Any],
        bound: Sequence[str],
        plain_entry: EntryPoint,
        pre_entry: EntryPoint,
        row: Row,
    ) -> None:
        from reefd.kernels.wrappers import pack_args

        self.gpu, self.counter = bench.gpu, bench.counter
        self.spec, self.params = spec, params
        self.plain_entry, self.pre_entry = plain_entry, pre_entry
        self.n_vb, self.grid = row.n_vb, row.grid
        self.tensors = make_operands(spec, params, bound)
        self.outputs = [o.name for o in spec.operands if o.access == "write"]
        self.inputs = {k: t for k, t in self.tensors.items() if k not in self.outputs}
        self.expected = {k: torch.empty_like(self.tensors[k]) for k in self.outputs}
        self.reference = TORCH_OVERRIDES.get(spec.name, (spec.reference, ""))[0]
        pointers = {k: t.data_ptr() for k, t in self.tensors.items()}
        self.args = pack_args(spec, params, pointers)

    def plain(self) -> None:
        self.gpu.launch_plain(self.plain_entry, self.args, self.n_vb)

    def preemptible(self, flag: int) -> Callable[[], None]:
        """A launch of the preemptible form reading the preempt flag at `flag`
        (the counter must be zeroed before each)."""

        def launch() -> None:
            self.gpu.launch_preemptible(
                self.pre_entry,
                self.grid,
                self.args,
                self.n_vb,
                self.counter.data_ptr(),
                flag,
            )

        return launch

    def torch(self) -> None:
        self.reference({**self.inputs, **self.expected}, self.params)

    def copy_out(self) -> None:
        for k in self.outputs:
            self.tensors[k].copy_(self.expected[k])

    def _poison(self) -> None:
        for k in self.outputs:
            t = self.tensors[k]
            t.fill_(math.nan if t.is_floating_point() else -1)

    def check(self) -> tuple[float, bool]:
        """(plain's relative L2 error vs torch, preemptible bit-equal to plain),
        each run on poisoned outputs (the preemptible one on a zero flag)."""
        self.torch()
        self._poison()
        self.plain()
        sync()
        err = max(rel_err(self.tensors[k], self.expected[k]) for k in self.outputs)
        plain = {k: self.tensors[k].clone() for k in self.outputs}
        self._poison()
        self.counter.zero_()
        flag = torch.zeros(1, dtype=torch.int32, device=DEVICE)
        self.preemptible(flag.data_ptr())()
        sync()
        same = all(bitwise_equal(self.tensors[k], plain[k]) for k in self.outputs)
        return err, same


# --- metadata --------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nvidia_driver() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # pynvml is optional: fall back to nvidia-smi
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def device_meta(launcher: Launcher) -> dict[str, Any]:
    from reefd.kernels.nvrtc import nvrtc_version

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    cuda_driver = launcher.driver_version()
    return {
        "device": {
            "name": props.name,
            "arch": launcher.arch,
            "sms": launcher.sms,
            "l2_bytes": launcher.l2_bytes,
            "memory_bytes": props.total_memory,
            "driver": _nvidia_driver(),
            "cuda_driver_api": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "reefd": reefd.__version__,
            "cuda_bindings": _version("cuda-bindings"),
            "nvrtc": ".".join(map(str, nvrtc_version())),
            "matplotlib": _version("matplotlib"),
        },
    }


def run_meta(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.kernels", *argv]),
        "cwd": os.getcwd(),
        "host": platform.node(),
        "models": args.models,
        "batch": args.batch,
        "settings": {
            "repeat": args.repeat,
            "warmup": args.warmup,
            "budget_s_per_measurement": args.budget,
            "kernels": args.kernels,
            "max_per_kernel": args.max_per_kernel,
            "limit": args.limit,
            "l2_flush": not args.no_flush,
            "torch_tf32": TF32_SETTING + " (TF32 on only for tf32 calls)",
            "torch_cudnn_benchmark": torch.backends.cudnn.benchmark,
            "timing": TIMING,
            "preemptible_grid": "min(SMs x CTAs/SM from ptxas resources, n_vb)",
            "tolerance_rel_l2": TOLERANCE,
        },
    }


# --- the command -----------------------------------------------------------------


def restrict(calls: Sequence[ZooCall], models: Sequence[str]) -> list[ZooCall]:
    """The calls of `models` only, with their counts over those models."""
    out = []
    for call in calls:
        mine = {m: n for m, n in call.models.items() if m in models}
        if mine:
            out.append(replace(call, count=sum(mine.values()), models=mine))
    return out


def first_per_kernel(calls: Sequence[ZooCall], n: int) -> list[ZooCall]:
    """The `n` most frequent calls of each kernel (calls sorted as `collect`)."""
    seen: dict[str, int] = {}
    out = []
    for call in sorted(calls, key=lambda c: (c.kernel, -c.count)):
        seen[call.kernel] = seen.get(call.kernel, 0) + 1
        if seen[call.kernel] <= n:
            out.append(call)
    return out


def _calls(args: argparse.Namespace) -> tuple[list[ZooCall], dict[str, Any]]:
    """The calls to measure: lowered (or read from --shapes), then filtered."""
    if args.shapes:
        calls, header = read_shapes(Path(args.shapes))
        if args.models:
            calls = restrict(calls, args.models)
        args.models = args.models or header["models"]
        args.batch = header["batch"]
        log(f"{len(calls)} distinct calls from {args.shapes}")
    else:
        args.models = args.models or list(zoo.NAMES)
        calls, failures = lower_zoo(args.models, args.batch)
        log(f"{len(calls)} distinct calls over {len(args.models)} models")
        header = shapes_json(calls, args.models, args.batch, failures)
    if args.kernels:
        calls = [c for c in calls if c.kernel in args.kernels]
    if args.max_per_kernel:
        calls = first_per_kernel(calls, args.max_per_kernel)
    if args.limit:
        calls = calls[: args.limit]
    return calls, header


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Lower (or read) the calls, measure each, write JSON, table and plot."""
    from reefd.kernels.launcher import Launcher

    out = Path(args.out or DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    calls, header = _calls(args)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    launcher = Launcher()
    flush = 0 if args.no_flush else 2 * (launcher.l2_bytes or 64 << 20)
    timer = Timer(args.repeat, args.warmup, flush, args.budget)
    meta = {**run_meta(args, argv), **device_meta(launcher)}
    meta["settings"].update(l2_flush_bytes=flush, host_ahead=timer.host_ahead)
    meta["lowering_failures"] = header.get("lowering_failures", {})
    log(f"device: {meta['device']['name']} ({launcher.sms} SMs, {launcher.arch})")
    log("measuring ceilings (512 MiB copy, 8192^3 matmuls) ...")
    meta["ceilings"] = measure_ceilings(timer)
    bench = Bench(launcher, timer, meta["ceilings"])
    bench.compile(calls, args.jobs)
    rows = measure_all(bench, calls, meta, out / "kernels.json")
    done = len(rows) == len(calls) and not meta["lowering_failures"]
    return report(rows, meta, out, complete=done)


def measure_all(
    bench: Bench, calls: Sequence[ZooCall], meta: Mapping[str, Any], path: Path
) -> list[Row]:
    """Every call in turn (progress on stderr, the JSON rewritten every 15 s);
    stops early if a launch fault broke the CUDA context."""
    rows: list[Row] = []
    written = time.monotonic()
    with bench.gpu.mapped_flag() as (_, mapped):
        for i, call in enumerate(calls, 1):
            row = bench.row(call, mapped)
            rows.append(row)
            log(
                f"[{i}/{len(calls)}] {row.kernel} {row.shape}: ours "
                f"{_num(row.ours_us)} us, torch {_num(row.torch_us)} us, ratio "
                f"{_num(row.ratio, 2)}, preempt {_num(row.preempt_ratio, 3)}"
                + (f"  ERROR {row.error}" if row.error else "")
            )
            if time.monotonic() - written > 15:
                _write_json(path, results_json(meta, rows, complete=False))
                written = time.monotonic()
            if row.error and not _context_alive():
                log("the CUDA context is broken (a launch faulted): stopping here")
                break
    return rows


def report(
    rows: Sequence[Row], meta: Mapping[str, Any], out: Path, complete: bool
) -> int:
    """Write the JSON, the table and the plot; print the per-kernel table and the
    summary last. Exit status 1 when a call failed or the run stopped early."""
    path = out / "kernels.json"
    results = results_json(meta, rows, complete=complete)
    _write_json(path, results)
    summary = format_summary(results["summary"])
    for model, error in meta.get("lowering_failures", {}).items():
        summary += f"\nNOT MEASURED: {model} did not lower: {error}"
    by_kernel = format_by_kernel(results["summary"]["by_kernel"])
    (out / "kernels.md").write_text(
        f"{format_table(rows)}\n\n{by_kernel}\n\n{summary}\n"
    )
    plotted = try_plot(results, out / "kernels.png")
    log(f"wrote {path} and {out / 'kernels.md'} (every call); {plotted}")
    print(by_kernel)
    print()
    print(summary)
    return 0 if complete and not any(r.error for r in rows) else 1


def _context_alive() -> bool:
    try:
        torch.cuda.synchronize()
    except RuntimeError:
        return False
    return True


HELP = """\
Time every distinct (kernel, params) call of the zoo models on a GPU: our plain
form, our preemptible form (persistent grid: SMs x CTAs/SM, preempt flag in
device memory and in mapped host memory) and torch eager (the kernel spec's
torch reference, which ends with a copy into the output, and that copy alone).
Each call is checked first (plain vs torch, preemptible vs plain bit for bit).

The models are lowered on the CPU (seconds each; --collect-only does just that
and --shapes reuses its file). Timing: CUDA events, warm-up runs, median of
--repeat runs, L2 flushed before each run, float32 in torch with TF32 off.

Writes OUT/kernels.json (device, versions, command, every row, summary),
OUT/kernels.md (every call, per kernel, summary) and OUT/kernels.png; prints the
per-kernel table and the summary. Ratios are ours/torch: > 1 means ours is
slower. Targets (docs/gpu-owed.md): geomean ours/torch <= {ratio},
preemptible/plain <= {preempt}.
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kernels",
        description=HELP.format(ratio=TARGET_RATIO, preempt=TARGET_PREEMPT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Needs a CUDA GPU, a CUDA build of torch, cuda.bindings and NVRTC "
            "(exit status 2 names what is missing); --collect-only and --plot run "
            "anywhere."
        ),
    )
    add = parser.add_argument
    add("--models", nargs="+", help="zoo models (default: all of bench/zoo.py)")
    add("--batch", type=int, default=8, help="batch size (default 8)")
    add("--repeat", type=int, default=50, help="timed runs per measurement (50)")
    add("--warmup", type=int, default=5, help="untimed runs first (5)")
    add(
        "--budget",
        type=float,
        default=0.5,
        help="seconds per measurement: long calls get fewer runs, >= 10 (0.5)",
    )
    add("--no-flush", action="store_true", help="keep L2 warm between runs")
    add("--kernels", nargs="+", default=[], help="only calls of these kernels")
    add(
        "--max-per-kernel",
        type=int,
        default=0,
        metavar="N",
        help="only the N most frequent calls of each kernel (to save time)",
    )
    add("--limit", type=int, default=0, help="only the first N calls (smoke test)")
    add(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel NVRTC compiles (default: CPU count)",
    )
    add("--out", help=f"output folder (default {DEFAULT_OUT})")
    add(
        "--collect-only",
        action="store_true",
        help="lower the models and write OUT/shapes.json; no GPU needed",
    )
    add("--shapes", metavar="FILE", help="calls from a --collect-only file")
    add(
        "--plot",
        metavar="RESULTS",
        help="only draw the PNG of a results JSON (beside it, or in --out)",
    )
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.models or []) - set(zoo.NAMES)):
        parser.error(f"unknown models {unknown}; known: {list(zoo.NAMES)}")
    if unknown := sorted(set(args.kernels) - set(catalog.names())):
        parser.error(f"unknown kernels {unknown}; known: {catalog.names()}")
    for option, value in (("--plot", args.plot), ("--shapes", args.shapes)):
        if value and not Path(value).is_file():
            parser.error(f"{option}: no such file {value!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.plot:
        if importlib.util.find_spec("matplotlib") is None:
            print("bench.kernels --plot: matplotlib is not installed", file=sys.stderr)
            return 2
        results = json.loads(Path(args.plot).read_text())
        folder = Path(args.out) if args.out else Path(args.plot).parent
        print(f"wrote {plot(results, folder / (Path(args.plot).stem + '.png'))}")
        return 0
    if args.collect_only:
        calls, header = _calls(args)
        out = Path(args.out or DEFAULT_OUT)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(
            out / "shapes.json", {**header, "calls": [asdict(c) for c in calls]}
        )
        print(f"wrote {out / 'shapes.json'}: {len(calls)} distinct calls")
        return 0
    if why := missing_gpu_support():
        print(f"bench.kernels: cannot time kernels here: {why}", file=sys.stderr)
        return 2
    try:
        return run(args, argv)
    except BackendError as exc:  # the driver refused before any call was timed
        print(f"bench.kernels: CUDA driver error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
