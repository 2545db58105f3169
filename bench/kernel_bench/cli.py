"""The command `python -m bench.kernels`: its options, `main`, and `run` (lower or
read the calls, measure them, write the results).

The parts that need a GPU (`Timer`, `measure_ceilings`, `device_meta`,
`missing_gpu_support`) are looked up on the package (bench/kernel_bench) when
used, so a CPU dry run replaces them there (tests/unit/test_bench_kernels.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench import kernel_bench as kb
from bench import zoo
from bench.kernel_bench.measurement import Bench, measure_all
from bench.kernel_bench.meta import run_meta
from bench.kernel_bench.plot import plot, try_plot
from bench.kernel_bench.progress import log
from bench.kernel_bench.report import (
    format_by_kernel,
    format_summary,
    format_table,
    results_json,
    write_json,
)
from bench.kernel_bench.rows import TARGET_PREEMPT, TARGET_RATIO, Row
from bench.kernel_bench.shapes import (
    ZooCall,
    first_per_kernel,
    lower_zoo,
    read_shapes,
    restrict,
    shapes_json,
)
from reefd.errors import BackendError
from reefd.kernels import catalog

DEFAULT_OUT = Path("bench/out/kernels")


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
    timer = kb.Timer(args.repeat, args.warmup, flush, args.budget)
    meta = {**run_meta(args, argv), **kb.device_meta(launcher)}
    meta["settings"].update(l2_flush_bytes=flush, host_ahead=timer.host_ahead)
    meta["lowering_failures"] = header.get("lowering_failures", {})
    log(f"device: {meta['device']['name']} ({launcher.sms} SMs, {launcher.arch})")
    log("measuring ceilings (512 MiB copy, 8192^3 matmuls) ...")
    meta["ceilings"] = kb.measure_ceilings(timer)
    bench = Bench(launcher, timer, meta["ceilings"])
    bench.compile(calls, args.jobs)
    rows = measure_all(bench, calls, meta, out / "kernels.json")
    done = len(rows) == len(calls) and not meta["lowering_failures"]
    return report(rows, meta, out, complete=done)


def report(
    rows: Sequence[Row], meta: Mapping[str, Any], out: Path, complete: bool
) -> int:
    """Write the JSON, the table and the plot; print the per-kernel table and the
    summary last. Exit status 1 when a call failed or the run stopped early."""
    path = out / "kernels.json"
    results = results_json(meta, rows, complete=complete)
    write_json(path, results)
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
        write_json(out / "shapes.json", {**header, "calls": [asdict(c) for c in calls]})
        print(f"wrote {out / 'shapes.json'}: {len(calls)} distinct calls")
        return 0
    if why := kb.missing_gpu_support():
        print(f"bench.kernels: cannot time kernels here: {why}", file=sys.stderr)
        return 2
    try:
        return run(args, argv)
    except BackendError as exc:  # the driver refused before any call was timed
        print(f"bench.kernels: CUDA driver error: {exc}", file=sys.stderr)
        return 2
