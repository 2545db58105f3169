"""`python -m bench.preempt`: how fast RT arrivals get BE work off the device,
per BE model, under `reef` and the baselines `wait` and `reset_hq`.

Every case is a real daemon with real client processes (bench.live): a BE
client runs one zoo model closed loop, and an RT client sends a light model
(--rt-model, default small_cnn) at --rt-rate-per-s, so that RT arrivals find
BE kernels running again and again. Cases: RT alone (under --alone-policy),
then every --be-models model under every --policy.

Preemption latency is the daemon's own measure (reefd/executor.py): from the
BE reset (queued BE launches dropped; under `reef` the preempt flag raised too)
until no BE kernel runs. The daemon reports the count, p50, p99 and max in its
status; warm-ups run one client at a time, so every preemption counted falls
in the measured window. `wait` never resets BE (it only stops issuing it), so
the daemon records no preemptions under it; what RT waits for there shows in
the client-measured RT p99 and its excess over RT alone, given for every case.

Target for `reef` on an H100 (docs/gpu-owed.md): preemption p99 <= 50 us.
Prints a markdown table; writes OUT/preempt.json (every figure and latency,
the command, date, versions, the daemon's device), OUT/preempt.png (grouped
bars of p99 with p50 and max marks, the target drawn; RT p99 excess below) and
the logs under OUT/logs/. Absolute times count only from a cuda run: the cpu
backend preempts only at kernel boundaries, and the sim backend's times are a
model. Never a test: nothing here asserts a time.

    python -m bench.preempt --backend sim
    python -m bench.preempt --backend cpu --reduced --duration-s 3
    python -m bench.preempt --backend cuda --daemon-args='--preempt-flag device'
    python -m bench.preempt --plot bench/out/preempt/preempt.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.live.cli import (
    add_live_options,
    check_live_options,
    live_settings,
    redraw,
)
from bench.live.meta import run_meta
from bench.live.plotting import try_plot
from bench.live.report import case_json, cell, markdown, write_json
from bench.live.runner import LiveSettings, Outcome, case_plan, client_plan, run_cases
from reefd.clients.harness import CasePlan, CaseResult
from reefd.sim.workloads import FIVE

TARGET_P99_US = 50.0
DEFAULT_POLICIES = ("reef", "wait", "reset_hq")
DEFAULT_OUT = Path("bench/out/preempt")
SCHEMA = 1


@dataclass(frozen=True)
class PreemptConfig:
    be_models: tuple[str, ...] = FIVE
    policies: tuple[str, ...] = DEFAULT_POLICIES
    rt_model: str = "small_cnn"
    """A light RT model: its arrivals are what preempts."""
    rt_rate_per_s: float = 100.0
    rt_slo_ms: float = 100.0
    """Registered with the RT model (one RT client: it orders nothing)."""
    alone_policy: str = "exclusive"


@dataclass(frozen=True)
class Row:
    label: str
    be_model: str | None
    policy: str
    preemptions: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    rt_done: int | None = None
    rt_p99_ms: float | None = None
    rt_p99_excess_ms: float | None = None
    """RT p99 here less RT p99 alone: what waiting for BE cost RT."""
    be_per_s: float | None = None
    error: str | None = None


def plans(cfg: PreemptConfig, settings: LiveSettings) -> list[CasePlan]:
    rt = client_plan(
        settings, "rt", cfg.rt_model, "rt", cfg.rt_rate_per_s, cfg.rt_slo_ms
    )
    out = [case_plan(settings, "RT alone", cfg.alone_policy, [rt])]
    for model in cfg.be_models:
        be = client_plan(settings, "be", model, "be")
        out += [
            case_plan(settings, f"{model}, {policy}", policy, [be, rt])
            for policy in cfg.policies
        ]
    return out


def rows(outcomes: Sequence[Outcome]) -> list[Row]:
    alone = outcomes[0].result.clients["rt"] if outcomes[0].result else None
    out = []
    for o in outcomes:
        be_plan = next((c for c in o.plan.clients if c.role == "be"), None)
        model = be_plan.model if be_plan else None
        if o.result is None:
            out.append(Row(o.plan.label, model, o.plan.policy, error=o.error))
            continue
        rt, be = o.result.clients.get("rt"), o.result.clients.get("be")
        p = o.result.preemptions
        excess = None
        if rt and alone and rt.p99_ms is not None and alone.p99_ms is not None:
            excess = rt.p99_ms - alone.p99_ms
        out.append(
            Row(
                label=o.plan.label,
                be_model=model,
                policy=o.plan.policy,
                preemptions=p.count - p.before_window,
                p50_us=p.p50_us,
                p99_us=p.p99_us,
                max_us=p.max_us,
                rt_done=rt.done if rt else None,
                rt_p99_ms=rt.p99_ms if rt else None,
                rt_p99_excess_ms=excess,
                be_per_s=be.throughput_per_s if be else None,
            )
        )
    return out


def table(results: dict[str, Any]) -> str:
    cfg, meta = results["config"], results["meta"]
    head = (
        f"RT: {cfg['rt_model']} at {cfg['rt_rate_per_s']:g} req/s; BE closed loop; "
        f"{results['settings']['duration_s']:g} s per case"
        f"{', reduced models' if results['settings']['reduced'] else ''}; "
        f"device: {meta['device']}\n{meta['note']}\n\n"
    )
    headers = [
        "BE model",
        "policy",
        "preemptions",
        "p50 us",
        "p99 us",
        "max us",
        "RT p99 ms",
        "RT p99 - alone ms",
        "BE req/s",
    ]
    body = []
    for r in results["rows"]:
        first = [r["be_model"] or r["label"], r["policy"]]
        if r["error"]:
            rest = [f"FAILED: {r['error'].splitlines()[0][:60]}"]
            body.append(first + rest + [""] * (len(headers) - 3))
            continue
        resets = r["preemptions"] or r["be_model"] is None
        body.append(
            first
            + [
                cell(r["preemptions"], 0) if resets else "0 (no resets)",
                cell(r["p50_us"], 0),
                cell(r["p99_us"], 0),
                cell(r["max_us"], 0),
                cell(r["rt_p99_ms"]),
                cell(r["rt_p99_excess_ms"]),
                cell(r["be_per_s"]),
            ]
        )
    tail = f"\ntarget for reef on an H100: preemption p99 <= {TARGET_P99_US:g} us"
    return head + markdown(headers, body) + tail


def draw(plt: Any, results: dict[str, Any]) -> Any:
    """Grouped bars per BE model, one colour per policy: preemption p99 (p50 and
    max marked) on a log axis, the RT p99 excess over RT alone below."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cases = [r for r in results["rows"] if r["be_model"]]
    models = list(dict.fromkeys(r["be_model"] for r in cases))
    policies = list(dict.fromkeys(r["policy"] for r in cases))
    width = 0.8 / max(1, len(policies))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    for j, policy in enumerate(policies):
        for i, model in enumerate(models):
            r = _find(cases, model, policy)
            if r is not None:
                _draw_case(top, bottom, r, i - 0.4 + width * (j + 0.5), width, f"C{j}")
    top.axhline(TARGET_P99_US, color="tab:green", ls="--")
    top.set_yscale("log")
    top.set_ylim(0.5, 10 * max([TARGET_P99_US, *_values(cases, "max_us")]))
    top.set_ylabel("preemption latency, us (log)")
    handles = [Patch(color=f"C{j}", label=p) for j, p in enumerate(policies)]
    top.legend(
        handles=[
            *handles,
            Line2D([], [], color="black", marker="_", ls="", label="p50"),
            Line2D([], [], color="black", marker="^", ls="", label="max"),
            Line2D([], [], color="tab:green", ls="--", label="H100 target p99"),
        ],
        title="bar: p99",
        fontsize=7,
        ncol=2,
        loc="upper left",
    )
    bottom.axhline(0.0, color="black", lw=0.8)
    bottom.set_yscale("symlog", linthresh=0.1)
    bottom.set_ylabel("RT p99 - RT alone p99, ms (symlog)")
    bottom.set_xticks(range(len(models)))
    bottom.set_xticklabels(models)
    cfg, meta = results["config"], results["meta"]
    reduced = " (reduced)" if results["settings"]["reduced"] else ""
    note = "" if meta["gpu_figures"] else "\n(not a GPU: no absolute GPU figures)"
    fig.suptitle(
        f"Preemption latency: RT {cfg['rt_model']} at {cfg['rt_rate_per_s']:g}/s "
        f"over closed-loop BE{reduced}\n{meta['device'][:90]}{note}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _find(cases: list[dict], model: str, policy: str) -> dict | None:
    return next(
        (c for c in cases if c["be_model"] == model and c["policy"] == policy), None
    )


def _values(cases: list[dict], key: str) -> list[float]:
    return [c[key] for c in cases if c[key]]


def _draw_case(top: Any, bottom: Any, r: dict, x: float, width: float, color: str):
    """One case: its p99 bar, p50 and max marks, or why there are none; its RT
    p99 excess bar."""
    if r["preemptions"] and r["max_us"]:
        top.bar(x, r["p99_us"], width, color=color)
        top.scatter([x], [r["p50_us"]], marker="_", color="black", s=60, zorder=3)
        top.scatter([x], [r["max_us"]], marker="^", color="black", s=25, zorder=3)
    else:
        why = "failed" if r["error"] else "no resets"
        if r["preemptions"]:
            why = f"{r['preemptions']} x 0 us"
        top.annotate(why, (x, 0.6), ha="center", rotation=90, fontsize=7, color=color)
    if r["rt_p99_excess_ms"] is not None:
        bottom.bar(x, r["rt_p99_excess_ms"], width, color=color)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.preempt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_live_options(
        p,
        policies=DEFAULT_POLICIES,
        duration_s=5.0,
        alone="RT-alone case",
        out=DEFAULT_OUT,
        results_name="preempt.json",
    )
    add = p.add_argument
    add(
        "--be-models",
        default=",".join(FIVE),
        help=f"comma-separated BE zoo models (default the DISB five: {','.join(FIVE)})",
    )
    add(
        "--rt-model",
        default="small_cnn",
        help="light RT model, demo or zoo (small_cnn)",
    )
    add("--rt-rate-per-s", type=float, default=100.0, help="RT requests/s (100)")
    add(
        "--rt-slo-ms",
        type=float,
        default=100.0,
        help="SLO the RT model registers with (100)",
    )
    args = p.parse_args(argv)
    args.models = tuple(x for x in args.be_models.split(",") if x)
    check_live_options(p, args, [*args.models, args.rt_model])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if redraw(args, draw):
        return 0
    cfg = PreemptConfig(
        be_models=args.models,
        policies=args.policies,
        rt_model=args.rt_model,
        rt_rate_per_s=args.rt_rate_per_s,
        rt_slo_ms=args.rt_slo_ms,
        alone_policy=args.alone_policy,
    )
    settings = live_settings(args)
    out = Path(args.out)
    outcomes = run_cases(plans(cfg, settings), out, describe)
    results = {
        "bench": "preempt",
        "schema": SCHEMA,
        "meta": run_meta("bench.preempt", argv, settings, outcomes),
        "config": asdict(cfg),
        "settings": asdict(settings),
        "targets": {"reef_preempt_p99_us_max": TARGET_P99_US},
        "rows": [asdict(r) for r in rows(outcomes)],
        "cases": [case_json(o) for o in outcomes],
    }
    path = write_json(out / "preempt.json", results)
    print(
        f"wrote {path}; {try_plot(draw, results, out / 'preempt.png')}", file=sys.stderr
    )
    print(table(results))
    return 0 if all(o.result is not None for o in outcomes) else 1


def describe(result: CaseResult) -> str:
    p = result.preemptions
    rt, be = result.clients.get("rt"), result.clients.get("be")
    parts = [
        f"{p.count - p.before_window} preemptions, p99 {cell(p.p99_us, 0)} us",
        f"max {cell(p.max_us, 0)} us",
    ]
    if rt:
        parts.append(f"RT p99 {cell(rt.p99_ms)} ms")
    if be:
        parts.append(f"BE {be.throughput_per_s:.2f} req/s")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
