"""`reef demo`: show RT and BE clients sharing one device under two policies.

Starts real daemons and real client processes: an RT client at a fixed request
rate with an SLO, and a closed-loop BE client. Cases: RT alone, BE alone, RT + BE
under `reef`, RT + BE under `fifo`. Prints one table with RT p50/p99 (measured
by the client, end to end) and BE throughput, each with its ratio to running
alone, and SLO attainment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reefd.clients.daemon import DaemonProcess


@dataclass(frozen=True)
class DemoConfig:
    duration_s: float = 10.0
    """Measured seconds per case."""
    rt_model: str = "small_cnn"
    be_model: str = "wide_cnn"
    rt_rate_per_s: float = 20.0
    rt_slo_ms: float = 15.0
    backend: str = "auto"
    settle_s: float = 8.0
    """Time given to clients to register and warm up before measuring starts."""


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


def _loadgen(
    cfg: DemoConfig, socket: str, priority: str, start_at: float
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "reefd.clients.loadgen",
        "--socket",
        socket,
        "--priority",
        priority,
        "--duration",
        str(cfg.duration_s),
        "--start-at",
        str(start_at),
    ]
    if priority == "rt":
        args += [
            "--model",
            cfg.rt_model,
            "--rate",
            str(cfg.rt_rate_per_s),
            "--slo-ms",
            str(cfg.rt_slo_ms),
        ]
    else:
        args += ["--model", cfg.be_model]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_case(cfg: DemoConfig, case: Case, workdir: Path) -> dict[str, dict]:
    socket = str(workdir / f"{case.policy}.sock")
    log_path = str(
        workdir / f"reefd-{case.label.replace(' ', '_').replace(',', '')}.log"
    )
    daemon = DaemonProcess(
        socket, backend=cfg.backend, policy=case.policy, log_path=log_path
    )
    daemon.start()
    try:
        start_at = time.time() + cfg.settle_s
        procs = {}
        if case.rt:
            procs["rt"] = _loadgen(cfg, socket, "rt", start_at)
        if case.be:
            procs["be"] = _loadgen(cfg, socket, "be", start_at)
        results = {}
        for role, proc in procs.items():
            out, err = proc.communicate(timeout=cfg.settle_s + cfg.duration_s + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"{role} client failed ({proc.returncode}):\n{err}")
            results[role] = json.loads(out.strip().splitlines()[-1])
    finally:
        code = daemon.stop()
    if code != 0:
        raise RuntimeError(f"reefd exited {code} on SIGTERM; see {log_path}")
    return results


def run_demo(cfg: DemoConfig, out: TextIO = sys.stdout) -> list[tuple[Case, dict]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="reef-demo-") as tmp:
        for i, case in enumerate(CASES, 1):
            print(
                f"[{i}/{len(CASES)}] {case.label}: daemon with policy {case.policy}, "
                f"{cfg.duration_s:g} s of load ...",
                file=out,
                flush=True,
            )
            rows.append((case, run_case(cfg, case, Path(tmp))))
    print(file=out)
    print(render_table(cfg, rows), file=out)
    return rows


def render_table(cfg: DemoConfig, rows: list[tuple[Case, dict]]) -> str:
    alone = {
        role: res[role]
        for case, res in rows
        for role in res
        if not (case.rt and case.be)
    }
    rt_alone = alone.get("rt", {})
    be_alone = alone.get("be", {})
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
            met = rt["slo_met"] / rt["done"] if rt["done"] else 0.0
            cells += [
                _f(rt["p50_ms"]),
                _f(rt["p99_ms"]),
                _ratio(rt["p99_ms"], rt_alone.get("p99_ms")),
                f"{met:.0%}",
            ]
        else:
            cells += ["-", "-", "-", "-"]
        if be:
            cells += [
                _f(be["throughput_per_s"]),
                _ratio(be["throughput_per_s"], be_alone.get("throughput_per_s")),
            ]
        else:
            cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    errors = sum(r.get("errors", 0) for _, res in rows for r in res.values())
    worst = max(
        (r.get("max_abs_err", 0.0) for _, res in rows for r in res.values()),
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
