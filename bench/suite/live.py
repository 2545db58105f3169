"""The suite on a live daemon (`--backend cuda|cpu|sim`) and the eager baseline.

Owns turning a workload into harness client plans (zoo models, full or
reduced; uniform arrivals from a seeded random phase, Poisson gaps seeded,
traces written to a file for the load generator) and running each case
through bench.live (one real daemon per case, real client processes warmed
up one at a time and started together; a failed case is recorded and the run
goes on; logs under OUT/logs/). `eager` runs the same clients as plain torch
processes on the device with no daemon.

SLOs: `--slo-ms` for every RT client, else `slo_factor` x the client's p50 in
the rt-alone case, registered with the daemon in the cases after it and used
for every case's attainment (without rt-alone and --slo-ms: none). Latency is
end to end as the client sees it. Preemptions are the daemon's own count and
percentiles. Utilisation: NVML busy time on cuda, n/a elsewhere (the daemon
reports none). Timeline: requests as clients saw them (send to return); the
daemon exposes no kernel trace, so live runs draw no kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from bench.live.models import model_key
from bench.live.report import cell
from bench.live.runner import LiveSettings, Outcome, Planned, case_plan, run_cases
from bench.suite.gpu_util import UtilSampler
from bench.suite.options import (
    ALONE_POLICY,
    SuiteOptions,
    client_names,
    selected,
    timeline_case,
    timeline_window_s,
)
from bench.suite.records import CaseRecord, ClientRecord, Preempt
from bench.suite.timeline import request_spans
from bench.workloads import ClientTemplate
from reefd.clients.harness import CasePlan, CaseResult, ClientPlan
from reefd.clients.harness import ClientResult as MeasuredClient


def run_live(
    opts: SuiteOptions, templates: Sequence[ClientTemplate], out: Path
) -> list[CaseRecord]:
    settings = LiveSettings(
        backend=opts.backend,
        duration_s=opts.duration_s,
        reduced=opts.reduced,
        daemon_args=(
            "--be-inflight-cap",
            str(opts.be_inflight_cap),
            *opts.daemon_args,
        ),
    )
    names = client_names(templates)
    plans = [_planned(opts, settings, templates, names, label) for label in opts.cases]
    sampler = UtilSampler().start() if opts.backend == "cuda" else None
    try:
        outcomes = run_cases(plans, out, describe)
    finally:
        if sampler is not None:
            sampler.stop()
    slos = _slos(opts, outcomes, names)
    drawn = timeline_case(opts, templates)
    return [_record(opts, o, slos, sampler, o.plan.label == drawn) for o in outcomes]


def _planned(
    opts: SuiteOptions,
    settings: LiveSettings,
    templates: Sequence[ClientTemplate],
    names: list[str],
    label: str,
) -> Planned:
    chosen = selected(label, templates)

    def plan(done: Sequence[Outcome]) -> CasePlan:
        slos = _slos(opts, done, names)
        clients = [
            _client_plan(opts, templates[i], names[i], i, slos.get(names[i]))
            for i in chosen
        ]
        policy = ALONE_POLICY if label in ("rt-alone", "be-alone") else label
        case = case_plan(settings, label, "-" if label == "eager" else policy, clients)
        if label == "eager":
            case = dataclasses.replace(case, eager_device=opts.backend)
        return case

    return plan


def _client_plan(
    opts: SuiteOptions,
    t: ClientTemplate,
    name: str,
    index: int,
    slo_ms: float | None,
) -> ClientPlan:
    open_loop = t.arrival != "closed"
    return ClientPlan(
        role=name,
        model=model_key(t.model, opts.reduced),
        priority=str(t.priority),
        rate_per_s=t.rate_per_s,
        slo_ms=slo_ms if t.priority == "rt" else None,
        arrival=t.arrival if open_loop else None,
        seed=opts.seed * 1009 + index if open_loop else None,
        trace_s=t.trace.offsets_s if t.trace else (),
        trace_period_s=t.trace.period_s if t.trace else None,
    )


def _slos(
    opts: SuiteOptions, done: Sequence[Outcome], names: list[str]
) -> dict[str, float]:
    """Each RT client's SLO: --slo-ms, else factor x its rt-alone p50."""
    rt_names = [n for n in names if n.startswith("rt")]
    if opts.slo_ms is not None:
        return dict.fromkeys(rt_names, opts.slo_ms)
    alone = next((o for o in done if o.plan.label == "rt-alone"), None)
    if alone is None or alone.result is None:
        return {}
    out = {}
    for name in rt_names:
        c = alone.result.clients.get(name)
        if c is not None and c.p50_ms is not None:
            out[name] = opts.slo_factor * c.p50_ms
    return out


def _record(
    opts: SuiteOptions,
    o: Outcome,
    slos: dict[str, float],
    sampler: UtilSampler | None,
    draw: bool,
) -> CaseRecord:
    base = CaseRecord(o.plan.label, o.plan.policy, opts.duration_s, error=o.error)
    r = o.result
    if r is None:
        return base
    clients = tuple(
        _client(name, c, o.plan, slos.get(name)) for name, c in r.clients.items()
    )
    window = timeline_window_s(opts.duration_s)
    return dataclasses.replace(
        base,
        clients=clients,
        preempt=_preempt(r),
        util=_util(sampler, r, opts.duration_s),
        util_source=_util_source(opts.backend, sampler),
        timeline=tuple(request_spans(clients, window)) if draw else (),
        timeline_kind="requests as the clients saw them, send to return (the "
        "daemon exposes no kernel trace)"
        if draw
        else "",
        timeline_window_s=window if draw else None,
        device=r.device,
        wall_s=r.wall_s,
    )


def _client(
    name: str, c: MeasuredClient, plan: CasePlan, slo_ms: float | None
) -> ClientRecord:
    client_plan = next(p for p in plan.clients if p.role == name)
    rate = c.rate_per_s
    return ClientRecord(
        name=name,
        model=c.model,
        priority=c.priority,
        arrival=c.arrival if rate is None else f"{c.arrival} {rate:.3g}/s",
        done=c.done,
        skipped=c.skipped,
        errors=c.errors,
        slo_ms=slo_ms if client_plan.priority == "rt" else None,
        latencies_ms=tuple(c.latencies_ms),
        sent_s=tuple(c.sent_s),
    )


def _preempt(r: CaseResult) -> Preempt | None:
    if not r.has_daemon:
        return None
    p = r.preemptions
    return Preempt(p.count - p.before_window, p.p50_us, p.p99_us, p.max_us)


def _util(
    sampler: UtilSampler | None, r: CaseResult, duration_s: float
) -> float | None:
    if sampler is None:
        return None
    return sampler.mean_between(r.window_start_s, r.window_start_s + duration_s)


def _util_source(backend: str, sampler: UtilSampler | None) -> str:
    if sampler is not None:
        return sampler.why_not or "NVML utilization.gpu (busy time, not occupancy)"
    if backend == "sim":
        return "n/a (the paced sim daemon does not report its occupancy)"
    return "n/a (no GPU on the cpu backend)"


def describe(result: CaseResult) -> str:
    parts = []
    for c in result.clients.values():
        if c.priority == "rt":
            parts.append(f"{c.model} p99 {cell(c.p99_ms)} ms")
    be = sum(c.throughput_per_s for c in result.clients.values() if c.priority == "be")
    if any(c.priority == "be" for c in result.clients.values()):
        parts.append(f"BE {be:.1f} req/s")
    if result.has_daemon:
        p = result.preemptions
        parts.append(f"{p.count - p.before_window} preemptions")
    return ", ".join(parts)
