"""Load generator: one client process driving one model at a daemon.

Open loop (`--rate R`): arrivals every 1/R s; one request at a time, and an
arrival that comes while the previous request is still out is skipped, as in
DISB. Closed loop (no rate): the next request goes out when the last returns.
Latency is measured here, end to end, as an application sees it. Prints one
JSON object with the results. Used by `reef demo`, the e2e tests and the bench.

With `--wait-go` whoever started the process paces it through stdin (a
`StdinGate`): once the model is registered it prints `{"registered": true}`
and waits for a line (any) before warming up; after warming up it prints
`{"ready": true}` and reads the wall-clock time (time.time()) to start
measuring. reefd.clients.harness uses this to warm clients up one at a time
and start them together. `main(models=...)` takes another model table (the
bench passes the zoo's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch

from reefd.clients.remote import compile
from reefd.demo_models import MODELS

ModelFactory = Callable[[], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]


class Gate(Protocol):
    """Paces a load generator from outside."""

    def registered(self) -> None:
        """The model is registered; returns when warming up may start."""

    def ready(self) -> float:
        """Warmed up; returns the wall-clock time to start measuring."""


class StdinGate:
    """The `--wait-go` handshake: JSON lines out on stdout, answers on stdin."""

    def registered(self) -> None:
        self._say("registered")
        self._read()

    def ready(self) -> float:
        self._say("ready")
        return float(self._read())

    @staticmethod
    def _say(state: str) -> None:
        print(json.dumps({state: True}), flush=True)

    @staticmethod
    def _read() -> str:
        line = sys.stdin.readline()
        if not line.strip():
            raise SystemExit("loadgen: stdin closed before the start")
        return line


@dataclass
class LoadResult:
    model: str
    priority: str
    rate_per_s: float | None
    duration_s: float
    done: int = 0
    skipped: int = 0
    errors: int = 0
    slo_ms: float | None = None
    slo_met: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    max_abs_err: float = 0.0

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else None
        out = asdict(self)
        out.pop("latencies_ms")
        out["p50_ms"] = None if lat is None else float(np.percentile(lat, 50))
        out["p99_ms"] = None if lat is None else float(np.percentile(lat, 99))
        out["throughput_per_s"] = self.done / self.duration_s
        return out


def run_load(
    model_name: str,
    priority: str,
    *,
    socket: str | None,
    duration_s: float,
    rate_per_s: float | None = None,
    slo_ms: float | None = None,
    start_at: float | None = None,
    warmup: int = 3,
    models: Mapping[str, ModelFactory] = MODELS,
    gate: Gate | None = None,
) -> LoadResult:
    """Register `model_name` (from `models`), warm up, then drive it for
    `duration_s` from `start_at`, or from the time `gate.ready()` returns."""
    torch.set_num_threads(1)  # the client only sends bytes; leave cores to the daemon
    model, inputs = models[model_name]()
    with torch.no_grad():
        expected = model(*inputs)
    remote = compile(
        model, inputs, priority=priority, slo_ms=slo_ms, socket=socket, name=model_name
    )
    res = LoadResult(model_name, priority, rate_per_s, duration_s, slo_ms=slo_ms)
    try:
        if gate is not None:
            gate.registered()
        for _ in range(warmup):
            remote(*inputs)
        if gate is not None:
            start_at = gate.ready()
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        _drive(remote, inputs, expected, res)
    finally:
        remote.close()
    return res


def _drive(remote, inputs, expected: torch.Tensor, res: LoadResult) -> None:
    start = time.monotonic()
    end = start + res.duration_s
    period = 1.0 / res.rate_per_s if res.rate_per_s else 0.0
    next_arrival = start
    while True:
        now = time.monotonic()
        if period:
            if next_arrival > now:
                time.sleep(next_arrival - now)
                now = time.monotonic()
            missed = int((now - next_arrival) / period)
            res.skipped += missed  # stale arrivals are skipped, not queued
            next_arrival += (missed + 1) * period
        if now >= end:
            return
        sent = time.monotonic()
        try:
            out = remote(*inputs)
        except Exception as exc:  # count it and keep going; report at the end
            res.errors += 1
            print(f"loadgen: request failed: {exc}", file=sys.stderr)
            continue
        latency_ms = (time.monotonic() - sent) * 1000
        res.done += 1
        res.latencies_ms.append(latency_ms)
        if res.slo_ms is not None and latency_ms <= res.slo_ms:
            res.slo_met += 1
        res.max_abs_err = max(res.max_abs_err, float((out - expected).abs().max()))


def main(
    argv: list[str] | None = None, models: Mapping[str, ModelFactory] = MODELS
) -> int:
    p = argparse.ArgumentParser(
        prog="python -m reefd.clients.loadgen",
        description="Drive one model at a reefd daemon and print JSON results.",
    )
    p.add_argument("--socket", help="daemon socket (default $REEFD_SOCKET)")
    p.add_argument("--model", choices=sorted(models), default="small_cnn")
    p.add_argument("--priority", choices=["rt", "be"], default="be")
    p.add_argument(
        "--rate",
        type=float,
        help="requests per second (open loop); omit for closed loop",
    )
    p.add_argument("--slo-ms", type=float, help="SLO of an RT model")
    p.add_argument(
        "--duration", type=float, default=10.0, help="seconds of measured load"
    )
    p.add_argument(
        "--start-at",
        type=float,
        help="wall-clock time (time.time()) to start measuring",
    )
    p.add_argument(
        "--wait-go",
        action="store_true",
        help='print {"registered": true} and wait for a line on stdin before '
        'warming up, then {"ready": true} and read the start time (time.time())',
    )
    p.add_argument(
        "--latencies", action="store_true", help="include every latency in the JSON"
    )
    args = p.parse_args(argv)
    res = run_load(
        args.model,
        args.priority,
        socket=args.socket,
        duration_s=args.duration,
        rate_per_s=args.rate,
        slo_ms=args.slo_ms,
        start_at=args.start_at,
        models=models,
        gate=StdinGate() if args.wait_go else None,
    )
    out = res.summary()
    if args.latencies:
        out["latencies_ms"] = res.latencies_ms
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
