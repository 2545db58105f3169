"""`python -m bench`: the benchmark suite's command line.

Owns the arguments, the order of a run (workload, traces' statistics, the
cases on the chosen backend, results written), and the results files:
OUT/results.json (options, meta, every case's record with every latency,
the figures), OUT/results.md (the tables), OUT/latency_cdf.png,
OUT/be_throughput.png, OUT/timeline.png, and OUT/logs/ on live backends.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.live.meta import timing_note, versions
from bench.live.report import write_json
from bench.suite.figures import case_figures
from bench.suite.options import (
    BACKENDS,
    BASELINES,
    SuiteOptions,
    default_cases,
    order_cases,
)
from bench.suite.plots import write_plots
from bench.suite.records import CaseRecord, from_json
from bench.suite.tables import render
from bench.traces import trace_stats
from bench.workloads import DESCRIPTIONS, WORKLOADS, ClientTemplate
from reefd.config import POLICIES

SCHEMA = 1

EPILOG = """\
backends:
  cuda      a live reefd daemon on the GPU, real client processes (the figures)
  cpu       a live daemon on the cpu backend (torch on CPU): checks the whole
            path; its times are NOT GPU figures
  sim       a live daemon on the simulated H100 paced by the wall clock: real
            clients and protocol, simulated kernel timing
  simulate  the virtual-time simulator (reefd.sim.runner): no processes, no
            wall clock; 60 s of workload in seconds, deterministic for a seed

cases (--policy): every daemon policy (%(policies)s), and the baselines
  rt-alone  only the RT clients (policy exclusive): the RT ratios' base
  be-alone  only the BE clients (policy exclusive): the BE ratio's base
  eager     every client a plain torch process on the device, no daemon
            (what a user does today; cuda and cpu only)

other figures: python -m bench.colocate, bench.preempt, bench.kernels,
bench.sim_scale (see bench/README.md).

examples:
  python -m bench run --workload A --backend cpu --duration 20 --reduced
  python -m bench run --workload A --backend simulate --duration 20
  python -m bench run --workload E --backend cuda --policy reef,streams,eager
  python -m bench plot bench/out/run-A-cpu/results.json
  python -m bench workloads
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="The reefd benchmark suite: DISB workloads under every "
        "policy and baseline; tables (RT p50/p99/p99.9, SLO attainment, BE "
        "throughput, preemptions, GPU utilisation, ratios to running alone) "
        "and plots.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG % {"policies": ", ".join(POLICIES)},
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a workload under the policies and baselines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG % {"policies": ", ".join(POLICIES)},
    )
    add = run.add_argument
    workloads = "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items())
    add("--workload", choices=list(WORKLOADS), default="A", help=workloads)
    add("--backend", choices=BACKENDS, default="cpu", help="see below (cpu)")
    add(
        "--policy",
        help="comma-separated cases, policies and baselines (default: rt-alone, "
        "be-alone, every policy, and eager on cuda/cpu)",
    )
    add("--duration", type=float, default=60.0, help="measured s per case (60)")
    add("--reduced", action="store_true", help="small zoo variants (quick on CPU)")
    add("--seed", type=int, default=0, help="arrival phases and Poisson gaps (0)")
    add(
        "--slo-factor",
        type=float,
        default=2.0,
        help="RT SLO = this x latency alone: live, the rt-alone p50; simulate, "
        "the solo time on the simulated GPU (2)",
    )
    add("--slo-ms", type=float, help="one SLO for every RT client instead")
    add("--be-inflight-cap", type=int, default=2, help="BE calls on the device (2)")
    add("--timeline", default="", help="case whose second to draw (reef)")
    add("--sms", type=int, default=132, help="simulated SMs (simulate; 132)")
    add(
        "--daemon-args",
        default="",
        help="further reefd flags for live cases, one string with '=' "
        "(e.g. --daemon-args='--preempt-flag device')",
    )
    add("--out", help="output folder (bench/out/run-WORKLOAD-BACKEND)")
    plot = sub.add_parser("plot", help="redraw the PNGs and tables of a results.json")
    plot.add_argument("results", help="a results.json written by `run`")
    sub.add_parser("workloads", help="print the workloads and their traces' statistics")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if args.command == "workloads":
        print(describe_workloads())
        return 0
    if args.command == "plot":
        return redraw(Path(args.results))
    try:
        names = [x for x in (args.policy or "").split(",") if x]
        cases = order_cases(names or default_cases(args.backend), args.backend)
    except ValueError as exc:
        p.error(str(exc))
    if args.timeline and args.timeline not in cases:
        p.error(f"--timeline {args.timeline!r} is not one of the cases {cases}")
    opts = SuiteOptions(
        workload=args.workload,
        backend=args.backend,
        duration_s=args.duration,
        reduced=args.reduced,
        cases=cases,
        seed=args.seed,
        slo_factor=args.slo_factor,
        slo_ms=args.slo_ms,
        be_inflight_cap=args.be_inflight_cap,
        timeline_case=args.timeline,
        daemon_args=tuple(shlex.split(args.daemon_args)),
        sms=args.sms,
    )
    out = Path(args.out or f"bench/out/run-{args.workload}-{args.backend}")
    return run(opts, out, argv)


def run(opts: SuiteOptions, out: Path, argv: Sequence[str]) -> int:
    templates = WORKLOADS[opts.workload]
    traces = trace_lines(templates)
    _log(f"workload {opts.workload}: {DESCRIPTIONS[opts.workload]}")
    for name, line in traces.items():
        _log(f"  trace {name}: {line}")
    _log(f"backend {opts.backend}; cases: {', '.join(opts.cases)}")
    if opts.backend == "simulate":
        from bench.suite.virtual import run_virtual

        records = run_virtual(opts, templates)
    else:
        from bench.suite.live import run_live

        records = run_live(opts, templates, out)
    results = assemble(opts, argv, templates, traces, records)
    path = write_json(out / "results.json", results)
    report = render(results, records)
    (out / "results.md").write_text(report + "\n")
    for line in [
        f"wrote {path}, {out / 'results.md'}",
        *write_plots(results, records, out),
    ]:
        _log(line)
    print(report)
    return 0 if all(r.error is None for r in records) else 1


def redraw(path: Path) -> int:
    results = json.loads(path.read_text())
    records = [from_json(c) for c in results["cases"]]
    report = render(results, records)
    (path.parent / "results.md").write_text(report + "\n")
    for line in write_plots(results, records, path.parent):
        _log(line)
    print(report)
    return 0


def trace_lines(templates: Sequence[ClientTemplate]) -> dict[str, str]:
    """Each trace client's statistics over its trace, and their total."""
    out: dict[str, str] = {}
    merged: list[float] = []
    period = 0.0
    for i, t in enumerate(templates):
        if t.trace is None:
            continue
        period = t.trace.period_s
        merged += t.trace.offsets_s
        out[f"#{i} {t.model}"] = trace_stats(t.trace.offsets_s, period).line()
    if len(out) > 1:
        out["all"] = trace_stats(merged, period).line()
    return out


def assemble(
    opts: SuiteOptions,
    argv: Sequence[str],
    templates: Sequence[ClientTemplate],
    traces: dict[str, str],
    records: Sequence[CaseRecord],
) -> dict[str, Any]:
    device = next(
        (r.device for r in records if r.device and r.label != "eager"),
        next((r.device for r in records if r.device), "unknown (no case ran)"),
    )
    return {
        "bench": "suite",
        "schema": SCHEMA,
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": shlex.join(["python", "-m", "bench", *argv]),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "backend": opts.backend,
            "device": device,
            "gpu_figures": opts.backend == "cuda",
            "note": timing_note(opts.backend, device),
            "versions": versions(),
        },
        "options": asdict(opts),
        "workload": {
            "name": opts.workload,
            "description": DESCRIPTIONS[opts.workload],
            "clients": [
                {"model": t.model, "priority": str(t.priority), "arrival": t.describe()}
                for t in templates
            ],
            "traces": traces,
        },
        "slo_rule": slo_rule(opts),
        "notes": notes(opts, records),
        "baselines": list(BASELINES),
        "figures": [asdict(f) for f in case_figures(records)],
        "cases": [asdict(r) for r in records],
    }


def slo_rule(opts: SuiteOptions) -> str:
    if opts.slo_ms is not None:
        return f"{opts.slo_ms:g} ms for every RT client"
    if opts.backend == "simulate":
        return f"{opts.slo_factor:g} x each RT model's solo time on the simulated GPU"
    if "rt-alone" not in opts.cases:
        return "none (no rt-alone case and no --slo-ms)"
    return f"{opts.slo_factor:g} x each RT client's p50 in the rt-alone case"


def notes(opts: SuiteOptions, records: Sequence[CaseRecord]) -> list[str]:
    out = []
    if opts.backend == "simulate":
        out.append(
            "virtual-time simulator: a model of an H100 (roofline call costs, no "
            "co-run slowdown); latency is arrival to completion inside the "
            "daemon; no eager baseline (no torch processes on a simulated GPU)"
        )
    else:
        out.append("latency is end to end, measured in each client process")
    if opts.backend == "cpu":
        out.append(
            "cpu: the daemon runs one kernel at a time on one thread, while "
            "eager clients are separate processes with one thread each, so on "
            "several cores they run in parallel: not what sharing a GPU is like"
        )
    if opts.backend == "sim":
        out.append("sim: a live daemon on the simulated GPU paced by the wall clock")
    if not any(r.timeline_window_s for r in records):
        out.append("no timeline: the drawn case did not run or failed")
    return out


def describe_workloads() -> str:
    lines = []
    for name, templates in WORKLOADS.items():
        lines.append(f"{name}: {DESCRIPTIONS[name]}")
        for t in templates:
            lines.append(f"    {t.priority} {t.model:13s} {t.describe()}")
        for label, line in trace_lines(templates).items():
            lines.append(f"    trace {label}: {line}")
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
