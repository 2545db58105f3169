"""The `reef` command: client-side tools (`status`, `demo`).

`reef status` asks a running daemon for its clients, models, queues, RT latency
percentiles, BE throughput and preemptions. `reef demo` runs the RT/BE demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reefd.errors import ReefError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reef",
        description="Client-side tools for reefd, the RT/BE GPU inference daemon.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="print what a running daemon is doing")
    st.add_argument(
        "--socket", help="daemon socket (default $REEFD_SOCKET, else the GPU 0 default)"
    )
    st.add_argument("--json", action="store_true", help="print the raw status as JSON")
    demo = sub.add_parser(
        "demo",
        help="start daemons, run RT and BE clients, print a comparison table",
        description=(
            "Runs four cases on real daemons with real client processes: RT alone, "
            "BE alone, RT + BE under the reef policy, RT + BE under fifo; prints RT "
            "p50/p99 and BE throughput with ratios to running alone."
        ),
    )
    demo.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per case"
    )
    demo.add_argument(
        "--rt-rate", type=float, default=20.0, help="RT requests per second"
    )
    demo.add_argument("--slo-ms", type=float, default=15.0, help="RT SLO in ms")
    demo.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"])
    run = sub.add_parser(
        "run",
        help="run an unmodified Python program with its models served by reefd",
        description=(
            "Runs COMMAND with a hook that sends every top-level torch module call "
            "made in eval mode under no_grad/inference_mode to the daemon (lowered "
            "once per module and input shapes). Models with ops the kernel catalog "
            "lacks run locally after one warning. Example: "
            "reef run --rt --slo-ms 20 -- python app.py"
        ),
    )
    prio = run.add_mutually_exclusive_group(required=True)
    prio.add_argument("--rt", action="store_true", help="real-time (latency-critical)")
    prio.add_argument("--be", action="store_true", help="best effort")
    run.add_argument("--slo-ms", type=float, help="SLO of the program's RT models")
    run.add_argument("--socket", help="daemon socket (default $REEFD_SOCKET)")
    run.add_argument(
        "argv", metavar="COMMAND", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "status":
            return status(args)
        if args.command == "run":
            from reefd.clients.run import run_command

            return run_command(args)
        return demo(args)
    except ReefError as exc:
        print(f"reef: {exc}", file=sys.stderr)
        return 1


def status(args: argparse.Namespace) -> int:
    from reefd.clients.client import Client

    with Client(args.socket, name="reef-status") as client:
        info = client.status()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(render_status(info))
    return 0


def render_status(info: dict[str, Any]) -> str:
    d, m, q, p = info["daemon"], info["metrics"], info["queues"], info["preemptions"]
    lines = [
        f"reefd {d['version']} pid {d['pid']} | {d['device']} | policy {d['policy']} | "
        f"up {d['uptime_s']:.0f} s{' | SHUTTING DOWN' if d['shutting_down'] else ''}",
        f"RT: {m['rt_done']} done, p50 {_ms(m['rt_p50_ms'])}, "
        f"p99 {_ms(m['rt_p99_ms'])}, SLO met {_pct(m['rt_slo_attainment'])}",
        f"BE: {m['be_done']} done, {m['be_throughput_per_s']:.2f} req/s (last 10 s)",
        f"preemptions: {p['count']}, p50 {_us(p['p50_us'])}, p99 {_us(p['p99_us'])}, "
        f"max {_us(p['max_us'])}; launches {info['launches']}; failed {m['failed']}",
        f"queues: {q['rt_queued']} RT queued, BE queued {q['be_queued'] or 0}, "
        f"in flight {q['inflight']}",
        "",
        "clients:",
        "  id  name                  pid      models  in-flight  done  failed  "
        "cancelled",
    ]
    for c in info["clients"]:
        lines.append(
            f"  {c['id']:<3} {c['name'][:20]:<21} {c['pid']:<8} {len(c['models']):<7} "
            f"{c['in_flight']:<10} {c['done']:<5} {c['failed']:<7} {c['cancelled']}"
        )
    lines += [
        "",
        "models:",
        "  id  name                  client  prio  SLO ms  calls  weights    done",
    ]
    for mo in info["models"]:
        slo = f"{mo['slo_ms']:g}" if mo["slo_ms"] else "-"
        lines.append(
            f"  {mo['id']:<3} {mo['name'][:20]:<21} {mo['client']:<7} "
            f"{mo['priority']:<5} {slo:<7} {mo['calls']:<6} "
            f"{mo['weight_bytes'] / 1e6:6.2f} MB {mo['done']}"
        )
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} us"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def demo(args: argparse.Namespace) -> int:
    from reefd.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        duration_s=args.duration,
        rt_rate_per_s=args.rt_rate,
        rt_slo_ms=args.slo_ms,
        backend=args.backend,
    )
    run_demo(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
