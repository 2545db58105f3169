"""`reef demo`: show RT and BE clients sharing one device under two policies.

Starts real daemons and real client processes: an RT client at a fixed request
rate with an SLO, and a closed-loop BE client. Cases: RT alone, BE alone, RT + BE
under `reef`, RT + BE under `fifo`. Prints one table with RT p50/p99 (measured
by the client, end to end) and BE throughput, each with its ratio to running
alone, and SLO attainment.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reefd.clients.harness import CasePlan, ClientPlan, ClientResult, run_case


@dataclass(frozen=True)
class DemoConfig:
    duration_s: float = 10.0
    """Measured seconds per case."""
    rt_model: str = "small_cnn"
    be_model: str = "wide_cnn"
    rt_rate_per_s: float = 20.0
    rt_slo_ms: float = 15.0
    backend: str = "auto"


@dataclass(frozen=True)
class Case:
    label: str
    policy: str
    rt: bool
    be: bool


CASES = (
    Case("RT alone", "reef", rt=True, be=False),
    Case("BE alone", "reef", rt=False, be=True),
    Case("RT + BE, reef", "reef", rt=True, be=True),
    Case("RT + BE, fifo", "fifo", rt=True, be=True),
)


def case_plan(cfg: DemoConfig, case: Case) -> CasePlan:
    clients = []
    if case.be:
        clients.append(ClientPlan("be", cfg.be_model, "be"))
    if case.rt:
        clients.append(
            ClientPlan(
                "rt", cfg.rt_model, "rt", cfg.rt_rate_per_s, slo_ms=cfg.rt_slo_ms
            )
        )
    return CasePlan(
        case.label, case.policy, tuple(clients), cfg.duration_s, backend=cfg.backend
    )


def run_demo(
    cfg: DemoConfig, out: TextIO = sys.stdout
) -> list[tuple[Case, dict[str, ClientResult]]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="reef-demo-") as tmp:
        for i, case in enumerate(CASES, 1):
            print(
                f"[{i}/{len(CASES)}] {case.label}: daemon with policy {case.policy}, "
                f"{cfg.duration_s:g} s of load ...",
                file=out,
                flush=True,
            )
            result = run_case(case_plan(cfg, case), Path(tmp) / f"c{i}")
            rows.append((case, result.clients))
    print(file=out)
    print(render_table(cfg, rows), file=out)
    return rows


def render_table(
    cfg: DemoConfig, rows: list[tuple[Case, dict[str, ClientResult]]]
) -> str:
    alone = {
        role: res[role]
        for case, res in rows
        for role in res
        if not (case.rt and case.be)
    }
    rt_alone = alone.get("rt")
    be_alone = alone.get("be")
    head = (
        f"RT: {cfg.rt_model} at {cfg.rt_rate_per_s:g} req/s, SLO {cfg.rt_slo_ms:g} ms; "
        f"BE: {cfg.be_model}, closed loop; {cfg.duration_s:g} s per case\n"
    )
    lines = [
        "| case | RT p50 ms | RT p99 ms | p99 vs alone | RT SLO met | BE req/s "
        "| BE vs alone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, res in rows:
        rt, be = res.get("rt"), res.get("be")
        cells = [case.label]
        if rt:
            met = rt.slo_met / rt.done if rt.done else 0.0
            cells += [
                _f(rt.p50_ms),
                _f(rt.p99_ms),
                _ratio(rt.p99_ms, rt_alone.p99_ms if rt_alone else None),
                f"{met:.0%}",
            ]
        else:
            cells += ["-", "-", "-", "-"]
        if be:
            cells += [
                _f(be.throughput_per_s),
                _ratio(
                    be.throughput_per_s, be_alone.throughput_per_s if be_alone else None
                ),
            ]
        else:
            cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    errors = sum(r.errors for _, res in rows for r in res.values())
    worst = max(
        (r.max_abs_err for _, res in rows for r in res.values()),
        default=0.0,
    )
    tail = f"\nrequests failed: {errors}; largest |output - torch eager|: {worst:.2e}"
    return head + "\n".join(lines) + tail


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"
