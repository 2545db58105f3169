"""How fast the simulator runs: N DISB workload-E clients for a virtual duration.

Not a test. Clients cycle through workload E's ten (five RT models with
Poisson arrivals, five BE models closed loop); by default the RT rate per
client is scaled so the total RT load stays workload E's (100 req/s), which
keeps the simulated GPU as busy as in E however many clients there are. Prints
the wall time, device events (finished block groups), kernels, events per
wall second, virtual seconds per wall second, and what one virtual hour would
take at that speed.

    PYTHONPATH=. python -m bench.sim_scale --clients 1000 --duration-s 60

The BE in-flight cap (`--be-inflight-cap`, in calls) sets how long the runs
of BE calls the scheduler issues can be: a run alone on the device is one
simulator event however many calls it holds.

With `--out DIR` it also writes DIR/sim_scale.json (the figures, the command,
date, machine and versions, and per model the requests done and latency
percentiles) and DIR/sim_scale.png (each RT model's simulated latency CDF).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import reefd
from reefd.scheduler.task import Priority
from reefd.sim.costs import RooflineCosts
from reefd.sim.runner import ClientSpec, percentile, simulate
from reefd.sim.shapes import h100_shape
from reefd.sim.workloads import WORKLOADS, ClientTemplate, workload

TOTAL_RT_RATE_PER_S = 100.0
"""Workload E's RT load: five clients at 20 req/s."""


def templates(n_clients: int, scale_rate: bool) -> list[ClientTemplate]:
    base = WORKLOADS["E"]
    n_rt = sum(1 for i in range(n_clients) if base[i % len(base)].priority == "rt")
    out = []
    for i in range(n_clients):
        t = base[i % len(base)]
        if t.priority is Priority.RT and scale_rate:
            t = ClientTemplate(
                t.model, t.priority, t.arrival, TOTAL_RT_RATE_PER_S / n_rt
            )
        out.append(t)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sim_scale", description=__doc__)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--duration-s", type=float, default=10.0, help="virtual seconds")
    p.add_argument("--policy", default="reef")
    p.add_argument("--reduced", action="store_true", help="small zoo variants")
    p.add_argument(
        "--be-inflight-cap",
        type=int,
        default=64,
        help="BE calls in flight at once (default 64)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-rate-scale",
        action="store_true",
        help="every RT client at 20 req/s (overloads the GPU beyond 10 clients)",
    )
    p.add_argument("--out", metavar="DIR", help="write sim_scale.json and .png here")
    p.add_argument(
        "--no-task-costs",
        action="store_true",
        help="hide call costs from the scheduler (no padding)",
    )
    args = p.parse_args(argv)
    shape = h100_shape()
    costs = RooflineCosts(shape)
    started = time.monotonic()
    chosen = templates(args.clients, not args.no_rate_scale)
    clients: list[ClientSpec] = workload(
        "E", costs, shape, reduced=args.reduced, templates=chosen
    )
    lowered_s = time.monotonic() - started
    t0 = time.monotonic()
    result = simulate(
        clients,
        args.policy,
        shape,
        costs,
        args.duration_s * 1e6,
        args.be_inflight_cap,
        args.seed,
        task_costs=not args.no_task_costs,
    )
    wall_s = time.monotonic() - t0
    events = result.device_events + result.arrivals
    rt = result.latencies_us(Priority.RT)
    print(
        f"{args.clients} clients (workload E{', reduced' if args.reduced else ''}, "
        f"policy {args.policy}, BE cap {args.be_inflight_cap} calls, task "
        f"costs {not args.no_task_costs}); models "
        f"lowered in {lowered_s:.1f} s"
    )
    print(f"virtual time      {args.duration_s:g} s")
    print(f"wall time         {wall_s:.1f} s")
    print(f"device events     {result.device_events}")
    print(f"spans             {result.spans} (runs fast-forwarded alone)")
    print(f"splits            {result.splits}")
    print(f"arrivals          {result.arrivals}")
    print(f"kernels           {result.kernels}")
    print(f"events / wall s   {events / wall_s:,.0f}")
    print(f"kernels / wall s  {result.kernels / wall_s:,.0f}")
    print(f"virtual s/wall s  {args.duration_s / wall_s:.4f}")
    print(
        f"1 virtual hour    {3600 * wall_s / args.duration_s / 60:,.0f} min "
        "(at this rate)"
    )
    print(
        f"RT done {result.done(Priority.RT)} (p99 "
        f"{(percentile(rt, 99) or 0) / 1000:.2f} ms), BE done "
        f"{result.done(Priority.BE)}, skipped "
        f"{sum(c.skipped for c in result.clients)}, SM occupancy "
        f"{100 * result.occupancy:.1f} %"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        figures = {
            "virtual_s": args.duration_s,
            "wall_s": round(wall_s, 2),
            "lowering_s": round(lowered_s, 1),
            "minutes_per_virtual_hour": round(3600 * wall_s / args.duration_s / 60, 2),
            "device_events": result.device_events,
            "spans": result.spans,
            "splits": result.splits,
            "kernels": result.kernels,
            "arrivals": result.arrivals,
            "padded_launches": result.padded_launches,
            "occupancy": round(result.occupancy, 4),
        }
        _write(out, args, argv, figures, result)
    return 0


def _per_model(result) -> dict[str, dict]:
    by_model: dict[str, dict] = {}
    for c in result.clients:
        m = by_model.setdefault(
            f"{c.spec.model_name} ({c.spec.priority})",
            {"clients": 0, "done": 0, "skipped": 0, "latencies_us": []},
        )
        m["clients"] += 1
        m["done"] += c.done
        m["skipped"] += c.skipped
        m["latencies_us"] += c.latencies_us
    for m in by_model.values():
        lat = m.pop("latencies_us")
        for q in (50, 99, 99.9):
            value = percentile(lat, q)
            m[f"p{q:g}_ms"] = None if value is None else round(value / 1000, 3)
    return by_model


def _write(out: Path, args, argv, figures: dict, result) -> None:
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(
            [
                "python",
                "-m",
                "bench.sim_scale",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "versions": {"python": platform.python_version(), "reefd": reefd.__version__},
        "settings": {
            "clients": args.clients,
            "policy": args.policy,
            "be_inflight_cap_calls": args.be_inflight_cap,
            "seed": args.seed,
            "reduced": args.reduced,
            "rate_scaled": not args.no_rate_scale,
            "task_costs": not args.no_task_costs,
            "device": "simulated H100 (132 SMs), roofline costs",
        },
        "figures": figures,
        "per_model": _per_model(result),
    }
    (out / "sim_scale.json").write_text(json.dumps(record, indent=2) + "\n")
    _plot(out / "sim_scale.png", result, args)
    print(f"wrote {out / 'sim_scale.json'} and {out / 'sim_scale.png'}")


def _plot(path: Path, result, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    models: dict[str, list[float]] = {}
    for c in result.clients:
        if c.spec.priority is Priority.RT:
            models.setdefault(c.spec.model_name, []).extend(c.latencies_us)
    for model, lat in sorted(models.items()):
        lat = sorted(x / 1000 for x in lat)
        if lat:
            ys = [(i + 1) / len(lat) for i in range(len(lat))]
            ax.plot(lat, ys, label=f"{model} ({len(lat)} requests)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("RT latency, arrival to completion (ms, simulated)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(
        f"Simulated workload E: {args.clients} clients, {args.duration_s:g} s, "
        f"policy {args.policy}"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
