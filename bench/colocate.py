"""`python -m bench.colocate`: an RT model at a fixed rate beside a closed-loop
BE model, under each policy, against each model alone.

Every case is a real daemon with real client processes (bench.live): the RT
client sends --rt-model at --rt-rate-per-s (open loop, one request out at a
time, stale arrivals skipped as in DISB) with an SLO, the BE client runs
--be-model closed loop. Cases, in order: RT alone, BE alone (both under
--alone-policy, default exclusive: plain kernels, nothing else on the device),
then RT + BE under each --policy. Figures per case: RT p50/p99 measured in the
client (end to end), RT p99 / RT p99 alone, SLO attainment (SLO = --rt-slo-ms,
or --rt-slo-factor x the RT-alone p50), RT arrivals skipped, BE requests/s and
BE / BE alone, and the daemon's preemptions in the window with their p99
latency (BE reset until no BE kernel runs).

Targets for `reef` on an H100 (docs/gpu-owed.md): RT p99 ratio <= 1.05, BE
throughput ratio >= 0.5. Prints a markdown table; writes OUT/colocate.json
(every figure and latency, the command, date, versions, the daemon's device)
and OUT/colocate.png (ratio bars per policy with the target lines); the
daemon and client logs go to OUT/logs/. Absolute times count only from a cuda
run; on cpu or sim only the ratios mean anything. Never a test: nothing here
asserts a time.

    python -m bench.colocate --backend sim
    python -m bench.colocate --backend cpu --reduced --duration-s 5
    python -m bench.colocate --plot bench/out/colocate/colocate.json
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
from bench.live.report import (
    case_json,
    cell,
    markdown,
    ratio,
    slo_attainment,
    write_json,
)
from bench.live.runner import (
    LiveSettings,
    Outcome,
    Planned,
    case_plan,
    client_plan,
    run_cases,
)
from reefd.clients.harness import CasePlan, CaseResult, ClientPlan

TARGET_RT_P99_RATIO = 1.05
TARGET_BE_RATIO = 0.5
DEFAULT_POLICIES = ("reef", "streams", "wait", "reset_hq", "exclusive")
DEFAULT_OUT = Path("bench/out/colocate")
SCHEMA = 1


@dataclass(frozen=True)
class ColocateConfig:
    rt_model: str = "resnet152"
    be_model: str = "vgg19"
    rt_rate_per_s: float = 20.0
    """RT arrivals per second (open loop)."""
    rt_slo_ms: float | None = None
    """RT SLO; None: rt_slo_factor x the RT-alone p50."""
    rt_slo_factor: float = 2.0
    policies: tuple[str, ...] = DEFAULT_POLICIES
    alone_policy: str = "exclusive"
    """Policy of the RT-alone and BE-alone cases."""


@dataclass(frozen=True)
class Row:
    """One case's figures (None where they do not apply or did not run)."""

    label: str
    policy: str
    rt_p50_ms: float | None = None
    rt_p99_ms: float | None = None
    rt_p99_ratio: float | None = None
    slo_attainment: float | None = None
    rt_done: int | None = None
    rt_skipped: int | None = None
    be_per_s: float | None = None
    be_ratio: float | None = None
    preemptions: int | None = None
    preempt_p99_us: float | None = None
    error: str | None = None


def plans(cfg: ColocateConfig, settings: LiveSettings) -> list[Planned]:
    def rt(slo_ms: float | None) -> ClientPlan:
        return client_plan(
            settings, "rt", cfg.rt_model, "rt", cfg.rt_rate_per_s, slo_ms
        )

    be = client_plan(settings, "be", cfg.be_model, "be")
    out: list[Planned] = [
        case_plan(settings, "RT alone", cfg.alone_policy, [rt(cfg.rt_slo_ms)]),
        case_plan(settings, "BE alone", cfg.alone_policy, [be]),
    ]
    for policy in cfg.policies:

        def together(done: Sequence[Outcome], policy: str = policy) -> CasePlan:
            slo = slo_ms(cfg, done[0].result if done else None)
            return case_plan(settings, f"RT + BE, {policy}", policy, [be, rt(slo)])

        out.append(together)
    return out


def slo_ms(cfg: ColocateConfig, rt_alone: CaseResult | None) -> float | None:
    if cfg.rt_slo_ms is not None:
        return cfg.rt_slo_ms
    p50 = rt_alone.clients["rt"].p50_ms if rt_alone else None
    return None if p50 is None else cfg.rt_slo_factor * p50


def rows(outcomes: Sequence[Outcome], slo: float | None) -> list[Row]:
    alone = {o.plan.label: o.result for o in outcomes[:2]}
    rt_alone = _client(alone.get("RT alone"), "rt")
    be_alone = _client(alone.get("BE alone"), "be")
    out = []
    for o in outcomes:
        if o.result is None:
            out.append(Row(o.plan.label, o.plan.policy, error=o.error))
            continue
        rt, be = _client(o.result, "rt"), _client(o.result, "be")
        p = o.result.preemptions
        out.append(
            Row(
                label=o.plan.label,
                policy=o.plan.policy,
                rt_p50_ms=rt.p50_ms if rt else None,
                rt_p99_ms=rt.p99_ms if rt else None,
                rt_p99_ratio=ratio(
                    rt.p99_ms if rt else None, rt_alone.p99_ms if rt_alone else None
                ),
                slo_attainment=slo_attainment(rt, slo),
                rt_done=rt.done if rt else None,
                rt_skipped=rt.skipped if rt else None,
                be_per_s=be.throughput_per_s if be else None,
                be_ratio=ratio(
                    be.throughput_per_s if be else None,
                    be_alone.throughput_per_s if be_alone else None,
                ),
                preemptions=p.count - p.before_window,
                preempt_p99_us=p.p99_us,
            )
        )
    return out


def _client(result: CaseResult | None, role: str) -> Any:
    return None if result is None else result.clients.get(role)


def table(results: dict[str, Any]) -> str:
    cfg, meta = results["config"], results["meta"]
    slo = results["slo_ms"]
    head = (
        f"RT: {cfg['rt_model']} at {cfg['rt_rate_per_s']:g} req/s, SLO "
        f"{cell(slo)} ms; BE: {cfg['be_model']} closed loop; "
        f"{results['settings']['duration_s']:g} s per case"
        f"{', reduced models' if results['settings']['reduced'] else ''}; "
        f"device: {meta['device']}\n{meta['note']}\n\n"
    )
    headers = [
        "case",
        "RT p50 ms",
        "RT p99 ms",
        "p99 / alone",
        "SLO met",
        "RT skipped",
        "BE req/s",
        "BE / alone",
        "preemptions",
        "preempt p99 us",
    ]
    body = []
    for r in results["rows"]:
        if r["error"]:
            body.append([r["label"], f"FAILED: {r['error'].splitlines()[0][:60]}"])
            body[-1] += [""] * (len(headers) - 2)
            continue
        met = r["slo_attainment"]
        body.append(
            [
                r["label"],
                cell(r["rt_p50_ms"]),
                cell(r["rt_p99_ms"]),
                cell(r["rt_p99_ratio"], suffix="x"),
                "-" if met is None else f"{met:.1%}",
                cell(r["rt_skipped"], 0),
                cell(r["be_per_s"]),
                cell(r["be_ratio"], suffix="x"),
                cell(r["preemptions"], 0),
                cell(r["preempt_p99_us"], 0),
            ]
        )
    targets = (
        f"\ntargets for reef on an H100: RT p99 / alone <= {TARGET_RT_P99_RATIO}, "
        f"BE / alone >= {TARGET_BE_RATIO}"
    )
    return head + markdown(headers, body) + targets


def draw(plt: Any, results: dict[str, Any]) -> Any:
    """Two bar charts over the RT + BE cases: RT p99 / alone and BE / alone."""
    together = [r for r in results["rows"] if r["label"].startswith("RT + BE")]
    names = [r["policy"] for r in together]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    panels = (
        (top, "rt_p99_ratio", "RT p99 / RT alone", TARGET_RT_P99_RATIO, "<="),
        (bottom, "be_ratio", "BE req/s / BE alone", TARGET_BE_RATIO, ">="),
    )
    for ax, key, label, target, sense in panels:
        values = [r[key] or 0.0 for r in together]
        colors = ["tab:blue" if n == "reef" else "tab:gray" for n in names]
        bars = ax.bar(range(len(names)), values, color=colors)
        for bar, r in zip(bars, together, strict=True):
            text = "failed" if r["error"] else cell(r[key], suffix="x")
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axhline(
            target, color="tab:green", ls="--", label=f"reef target {sense} {target}"
        )
        ax.set_ylim(0, 1.2 * max([*values, target, 1.0]))
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize=8)
    bottom.set_xticks(range(len(names)))
    bottom.set_xticklabels(names)
    cfg, meta = results["config"], results["meta"]
    fig.suptitle(
        f"{cfg['rt_model']} RT at {cfg['rt_rate_per_s']:g}/s + {cfg['be_model']} BE"
        f"{' (reduced)' if results['settings']['reduced'] else ''}\n"
        f"{meta['device'][:90]}"
        + ("" if meta["gpu_figures"] else "\n(not a GPU: only the ratios count)"),
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.colocate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_live_options(
        p,
        policies=DEFAULT_POLICIES,
        duration_s=10.0,
        alone="RT-alone and BE-alone cases",
        out=DEFAULT_OUT,
        results_name="colocate.json",
    )
    add = p.add_argument
    add("--rt-model", default="resnet152", help="RT model, zoo or demo (resnet152)")
    add("--be-model", default="vgg19", help="BE model, zoo or demo (vgg19)")
    add("--rt-rate-per-s", type=float, default=20.0, help="RT requests/s (20)")
    add("--rt-slo-ms", type=float, help="RT SLO in ms (default: factor x alone p50)")
    add(
        "--rt-slo-factor",
        type=float,
        default=2.0,
        help="without --rt-slo-ms, the SLO is this times the RT-alone p50 (2)",
    )
    args = p.parse_args(argv)
    check_live_options(p, args, [args.rt_model, args.be_model])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if redraw(args, draw):
        return 0
    cfg = ColocateConfig(
        rt_model=args.rt_model,
        be_model=args.be_model,
        rt_rate_per_s=args.rt_rate_per_s,
        rt_slo_ms=args.rt_slo_ms,
        rt_slo_factor=args.rt_slo_factor,
        policies=args.policies,
        alone_policy=args.alone_policy,
    )
    settings = live_settings(args)
    out = Path(args.out)
    outcomes = run_cases(plans(cfg, settings), out, describe)
    slo = slo_ms(cfg, outcomes[0].result)
    results = {
        "bench": "colocate",
        "schema": SCHEMA,
        "meta": run_meta("bench.colocate", argv, settings, outcomes),
        "config": asdict(cfg),
        "settings": asdict(settings),
        "slo_ms": slo,
        "targets": {
            "reef_rt_p99_ratio_max": TARGET_RT_P99_RATIO,
            "reef_be_ratio_min": TARGET_BE_RATIO,
        },
        "rows": [asdict(r) for r in rows(outcomes, slo)],
        "cases": [case_json(o) for o in outcomes],
    }
    path = write_json(out / "colocate.json", results)
    print(
        f"wrote {path}; {try_plot(draw, results, out / 'colocate.png')}",
        file=sys.stderr,
    )
    print(table(results))
    return 0 if all(o.result is not None for o in outcomes) else 1


def describe(result: CaseResult) -> str:
    parts = []
    if rt := result.clients.get("rt"):
        parts.append(f"RT {rt.done} done, p99 {cell(rt.p99_ms)} ms")
    if be := result.clients.get("be"):
        parts.append(f"BE {be.throughput_per_s:.2f} req/s")
    p = result.preemptions
    parts.append(f"{p.count - p.before_window} preemptions")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
