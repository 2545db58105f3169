"""`python -m reefd.sim`: a DISB workload under each policy on the simulated GPU.

Owns the command line and the tables it prints: per policy, one row per client
(requests done and skipped, latency percentiles, SLO attainment), then one
summary row per policy (RT tail, BE throughput, preemption latency, padding,
SM occupancy, events and wall time). Run from the repository root with
PYTHONPATH=. (the workloads use bench/zoo.py):

    PYTHONPATH=. python -m reefd.sim --workload A --policy reef,fifo --duration-s 10
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from reefd.config import POLICIES
from reefd.scheduler.task import Priority
from reefd.sim.costs import CostSource, RooflineCosts, StoreCosts
from reefd.sim.records import Slowdown, no_slowdown
from reefd.sim.runner import SimResult, percentile, simulate
from reefd.sim.shapes import H100_ARCH, device_shape
from reefd.sim.workloads import WORKLOADS, workload


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}"


def _us(us: float | None) -> str:
    return "-" if us is None else f"{us:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [head, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in lines
    )


def client_table(result: SimResult) -> str:
    head = ["client", "prio", "arrival", "done", "skipped", "p50 ms", "p99 ms"]
    head += ["p99.9 ms", "SLO ms", "SLO %", "preempted"]
    rows = []
    for c in result.clients:
        spec = c.spec
        arrival = (
            spec.arrival
            if spec.rate_per_s is None
            else (f"{spec.arrival} {spec.rate_per_s:g}/s")
        )
        rows.append(
            [
                c.name,
                str(spec.priority),
                arrival,
                str(c.done),
                str(c.skipped),
                _ms(c.percentile_us(50)),
                _ms(c.percentile_us(99)),
                _ms(c.percentile_us(99.9)),
                "-" if spec.slo_ms is None else f"{spec.slo_ms:.3f}",
                _pct(c.slo_attainment),
                str(c.preemptions),
            ]
        )
    return table(head, rows)


def summary_table(results: Sequence[tuple[SimResult, float]]) -> str:
    head = ["policy", "RT p50 ms", "RT p99 ms", "RT p99.9 ms", "RT SLO %"]
    head += ["BE req/s", "preempt p50/p99 us", "drain p99 us", "padded/BE vbs"]
    head += ["SM occ %", "events", "wall s"]
    rows = []
    for r, wall_s in results:
        pre = r.preemption_latencies_us
        rows.append(
            [
                r.policy,
                _ms(r.percentile_us(Priority.RT, 50)),
                _ms(r.percentile_us(Priority.RT, 99)),
                _ms(r.percentile_us(Priority.RT, 99.9)),
                _pct(r.rt_slo_attainment),
                f"{r.be_throughput_per_s:.1f}",
                f"{_us(percentile(pre, 50))}/{_us(percentile(pre, 99))} (n={len(pre)})",
                _us(percentile(r.be_drain_us, 99)),
                f"{r.padded_launches}/{r.padded_be_blocks}",
                f"{100 * r.occupancy:.1f}",
                str(r.device_events),
                f"{wall_s:.1f}",
            ]
        )
    return table(head, rows)


def _costs(args: argparse.Namespace, shape) -> CostSource:
    resources = None
    if args.compiled_resources:
        from reefd.profiler.facts import Resources

        resources = Resources(H100_ARCH, note=lambda m: print(m, file=sys.stderr))
    roofline = RooflineCosts(shape, resources=resources)
    if args.profiles is None:
        return roofline
    return StoreCosts.open(args.profiles, shape, roofline)


def _slowdown(path: str | None) -> Slowdown:
    if path is None:
        return no_slowdown
    from reefd.interference.model import InterferenceModel
    from reefd.sim.interference import ModelSlowdown

    model = InterferenceModel.load(path)
    print(f"co-run slowdown: {path} ({len(model.task_keys)} tasks known)")
    return ModelSlowdown(model)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reefd.sim", description=__doc__)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="A")
    p.add_argument(
        "--policy",
        default=",".join(POLICIES),
        help=f"comma-separated, from {', '.join(POLICIES)} (default: all)",
    )
    p.add_argument("--duration-s", type=float, default=10.0, help="virtual seconds")
    p.add_argument("--reduced", action="store_true", help="small zoo variants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--be-inflight-cap", type=int, default=2)
    p.add_argument("--slo-x", type=float, default=2.0, help="SLO / solo latency")
    p.add_argument("--sms", type=int, default=132, help="SMs (H100 SXM: 132)")
    p.add_argument("--profiles", help="profile store (SQLite) for measured costs")
    p.add_argument(
        "--compiled-resources",
        action="store_true",
        help="registers and shared memory from NVRTC instead of the table",
    )
    p.add_argument(
        "--interference-model",
        metavar="PATH",
        help="co-run slowdown from this trained model file (`reef-profile train`); "
        "default: none (co-running never slows a block)",
    )
    p.add_argument("--quiet", action="store_true", help="summary table only")
    args = p.parse_args(argv)
    policies = [x.strip() for x in args.policy.split(",") if x.strip()]
    if unknown := sorted(set(policies) - set(POLICIES)):
        p.error(f"unknown policies {unknown}; choose from {list(POLICIES)}")
    shape = device_shape(args.sms, H100_ARCH)
    costs = _costs(args, shape)
    started = time.monotonic()
    clients = workload(
        args.workload, costs, shape, reduced=args.reduced, slo_factor=args.slo_x
    )
    print(
        f"workload {args.workload}{' (reduced)' if args.reduced else ''}: "
        f"{len(clients)} clients, {args.duration_s:g} s virtual, {args.sms} SMs, "
        f"costs {type(costs).__name__}, seed {args.seed}; models lowered in "
        f"{time.monotonic() - started:.1f} s"
    )
    slowdown = _slowdown(args.interference_model)
    results = []
    for policy in policies:
        t0 = time.monotonic()
        result = simulate(
            clients,
            policy,
            shape,
            costs,
            args.duration_s * 1e6,
            args.be_inflight_cap,
            args.seed,
            slowdown=slowdown,
        )
        results.append((result, time.monotonic() - t0))
        if not args.quiet:
            print(f"\n== {policy} ==")
            print(client_table(result))
    print()
    print(summary_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
