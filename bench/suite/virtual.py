"""The suite on the virtual-time simulator (`--backend simulate`).

Owns turning a workload into simulator clients once (models lowered, SLOs
from each model's solo time on the simulated H100, or `--slo-ms`) and
running each case with `reefd.sim.runner.simulate`: same scheduler, same
policies, a simulated GPU on a virtual clock, so a 60 s case takes seconds
and is deterministic for a seed. Figures are a model of an H100 with roofline
call costs and no co-run slowdown, NOT measurements. Utilisation is the
simulated SM occupancy; the timeline is the device's own kernel runs
(completions' start and end) for one second of one case. Latency is arrival
to completion inside the daemon, not end to end. No eager baseline here:
there are no torch processes on a simulated device.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence

from bench.suite.options import (
    ALONE_POLICY,
    SuiteOptions,
    client_names,
    selected,
    timeline_case,
    timeline_window_s,
)
from bench.suite.records import CaseRecord, ClientRecord, Preempt, Span
from bench.suite.timeline import merge_spans
from bench.workloads import ClientTemplate
from reefd.scheduler.plan import Completion
from reefd.scheduler.task import Priority
from reefd.sim.costs import RooflineCosts
from reefd.sim.results import SimResult, percentile
from reefd.sim.runner import ClientSpec, simulate
from reefd.sim.shapes import H100_ARCH, device_shape
from reefd.sim.workloads import workload


def run_virtual(
    opts: SuiteOptions, templates: Sequence[ClientTemplate]
) -> list[CaseRecord]:
    shape = device_shape(opts.sms, H100_ARCH)
    costs = RooflineCosts(shape)
    started = time.monotonic()
    specs = workload(
        opts.workload,
        costs,
        shape,
        reduced=opts.reduced,
        slo_factor=opts.slo_factor,
        templates=templates,
    )
    if opts.slo_ms is not None:
        specs = [
            dataclasses.replace(s, slo_ms=opts.slo_ms)
            if s.priority is Priority.RT
            else s
            for s in specs
        ]
    _log(f"models lowered in {time.monotonic() - started:.1f} s")
    names = client_names(templates)
    device = (
        f"simulated H100 ({opts.sms} SMs, roofline costs, no co-run slowdown), "
        "virtual time"
    )
    drawn = timeline_case(opts, templates)
    records = []
    for i, label in enumerate(opts.cases, 1):
        chosen = selected(label, templates)
        _log(
            f"[{i}/{len(opts.cases)}] {label}: {len(chosen)} clients, "
            f"{opts.duration_s:g} s virtual ..."
        )
        record = _case(
            opts,
            label,
            [specs[j] for j in chosen],
            [names[j] for j in chosen],
            label == drawn,
        )
        records.append(dataclasses.replace(record, device=device))
        _log(f"    done in {record.wall_s:.1f} s")
    return records


def _case(
    opts: SuiteOptions,
    label: str,
    specs: list[ClientSpec],
    names: list[str],
    draw: bool,
) -> CaseRecord:
    policy = ALONE_POLICY if label in ("rt-alone", "be-alone") else label
    shape = device_shape(opts.sms, H100_ARCH)
    window = timeline_window_s(opts.duration_s)
    spans: list[Span] = []

    def observe(index: int, c: Completion) -> None:
        start_ms, end_ms = c.start_us / 1e3, c.end_us / 1e3
        if end_ms > window[0] * 1e3 and start_ms < window[1] * 1e3:
            spans.append(
                Span(names[index], str(specs[index].priority), start_ms, end_ms)
            )

    t0 = time.monotonic()
    try:
        result = simulate(
            specs,
            policy,
            shape,
            RooflineCosts(shape),
            opts.duration_s * 1e6,
            opts.be_inflight_cap,
            opts.seed,
            observe=observe if draw else None,
        )
    except Exception as exc:  # one failed case must not lose the others
        _log(f"    FAILED: {type(exc).__name__}: {exc}")
        return CaseRecord(
            label, policy, opts.duration_s, error=f"{type(exc).__name__}: {exc}"
        )
    return CaseRecord(
        label=label,
        policy=policy,
        duration_s=opts.duration_s,
        clients=tuple(_client(result, i, n) for i, n in enumerate(names)),
        preempt=_preempt(result),
        util=result.occupancy,
        util_source="simulated SM occupancy (CTA slots held)",
        timeline=tuple(merge_spans(spans)) if draw else (),
        timeline_kind="kernels on the simulated device (runs of calls as "
        "completed; a padded BE slice shows on its BE lane)"
        if draw
        else "",
        timeline_window_s=window if draw else None,
        wall_s=time.monotonic() - t0,
    )


def _client(result: SimResult, index: int, name: str) -> ClientRecord:
    c = result.clients[index]
    spec = c.spec
    rate = spec.mean_rate_per_s
    return ClientRecord(
        name=name,
        model=spec.model_name,
        priority=str(spec.priority),
        arrival=spec.arrival if rate is None else f"{spec.arrival} {rate:.3g}/s",
        done=c.done,
        skipped=c.skipped,
        errors=0,
        slo_ms=spec.slo_ms,
        latencies_ms=tuple(x / 1e3 for x in c.latencies_us),
    )


def _preempt(result: SimResult) -> Preempt:
    lat = result.preemption_latencies_us
    return Preempt(
        len(lat), percentile(lat, 50), percentile(lat, 99), max(lat) if lat else None
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
