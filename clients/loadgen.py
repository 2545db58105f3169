"""Load generator: one client process driving one model at a daemon.

Open loop: `--rate R` alone gives arrivals every 1/R s (from the start, or
from a random phase given `--seed`); `--arrival poisson` exponential gaps at
rate R (seeded); `--arrival trace --trace FILE` the offsets in a JSON file
(`{"offsets_s": [...], "period_s": P}`, looped every P s). One request at a
time, as in DISB: an arrival that comes while the previous request is still
out is skipped and counted, never queued; the next request goes out at the
next arrival. Closed loop (no rate): the next request goes out when the last
returns. Latency is measured here, end to end, as an application sees it.
Prints one JSON object with the results. Used by `reef demo`, the e2e tests
and the bench.

`--eager DEVICE` runs the model in this process with plain torch on DEVICE
(cpu or cuda) instead of at a daemon, with the same arrivals and the same
measurements: the bench's "no daemon" baseline.

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
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

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


@dataclass(frozen=True)
class Arrivals:
    """An open-loop arrival process: times in seconds from the start."""

    kind: str = "uniform"
    """uniform, poisson or trace."""
    rate_per_s: float | None = None
    trace_s: tuple[float, ...] = ()
    trace_period_s: float | None = None
    seed: int | None = None
    """uniform: None starts at 0, else a seeded random phase; poisson: the
    gaps' seed (None: 0)."""

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "poisson", "trace"):
            raise ValueError(f"arrival {self.kind!r}: choose uniform, poisson, trace")
        if self.kind == "trace":
            if not self.trace_s or not (self.trace_period_s or 0) > 0:
                raise ValueError("trace arrivals need offsets and a period > 0")
        elif not (self.rate_per_s or 0) > 0:
            raise ValueError(f"{self.kind} arrivals need a rate > 0")

    def times(self) -> Iterator[float]:
        rng = random.Random(self.seed or 0)
        if self.kind == "trace":
            assert self.trace_period_s
            loop = 0
            while True:
                base = loop * self.trace_period_s
                yield from (base + t for t in self.trace_s)
                loop += 1
        assert self.rate_per_s
        period = 1.0 / self.rate_per_s
        if self.kind == "uniform":
            t = 0.0 if self.seed is None else rng.random() * period
            k = 0
            while True:
                yield t + k * period
                k += 1
        t = rng.expovariate(self.rate_per_s)
        while True:
            yield t
            t += rng.expovariate(self.rate_per_s)

    @classmethod
    def from_file(cls, path: str) -> Arrivals:
        with open(path) as fh:
            data = json.load(fh)
        return cls("trace", None, tuple(data["offsets_s"]), float(data["period_s"]))


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
    sent_s: list[float] = field(default_factory=list)
    """When each measured request went out, seconds from the window's start."""
    max_abs_err: float = 0.0
    arrival: str = "closed"

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else None
        out = asdict(self)
        out.pop("latencies_ms")
        out.pop("sent_s")
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
    arrivals: Arrivals | None = None,
    eager_device: str | None = None,
) -> LoadResult:
    """Register `model_name` (from `models`), warm up, then drive it for
    `duration_s` from `start_at`, or from the time `gate.ready()` returns.

    Open loop at `rate_per_s` (uniform from 0) unless `arrivals` says
    otherwise; closed loop when both are None. With `eager_device` the model
    runs here, by plain torch on that device, and no daemon is involved."""
    torch.set_num_threads(1)  # the client only sends bytes; leave cores to the daemon
    if arrivals is None and rate_per_s is not None:
        arrivals = Arrivals("uniform", rate_per_s)
    if arrivals is not None and arrivals.kind == "trace":
        assert arrivals.trace_period_s
        rate_per_s = len(arrivals.trace_s) / arrivals.trace_period_s
    model, inputs = models[model_name]()
    with torch.no_grad():
        expected = model(*inputs)
    if eager_device is not None:
        remote: Any = _Eager(model, eager_device)
    else:
        remote = compile(
            model,
            inputs,
            priority=priority,
            slo_ms=slo_ms,
            socket=socket,
            name=model_name,
        )
    res = LoadResult(model_name, priority, rate_per_s, duration_s, slo_ms=slo_ms)
    res.arrival = "closed" if arrivals is None else arrivals.kind
    try:
        if gate is not None:
            gate.registered()
        for _ in range(warmup):
            remote(*inputs)
        if gate is not None:
            start_at = gate.ready()
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        _drive(remote, inputs, expected, res, arrivals)
    finally:
        remote.close()
    return res


class _Eager:
    """The model in this process, plain torch on `device`: what an
    application does without a daemon. Inputs go to the device and the output
    comes back to the host on every call, as through the daemon."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(*(x.to(self.device) for x in inputs))
        return out.cpu()  # waits for the device

    def close(self) -> None:
        pass


def _drive(
    remote, inputs, expected: torch.Tensor, res: LoadResult, arrivals: Arrivals | None
) -> None:
    start = time.monotonic()
    end = start + res.duration_s
    times = None if arrivals is None else arrivals.times()
    free_at = start  # when the last request returned
    while True:
        if times is not None:
            at = start + next(times)
            while at < min(free_at, end):  # came while a request was out: stale
                res.skipped += 1
                at = start + next(times)
            if at >= end:
                return
            time.sleep(max(0.0, at - time.monotonic()))
        elif time.monotonic() >= end:
            return
        sent = time.monotonic()
        try:
            out = remote(*inputs)
        except Exception as exc:  # count it and keep going; report at the end
            res.errors += 1
            print(f"loadgen: request failed: {exc}", file=sys.stderr)
            continue
        finally:
            free_at = time.monotonic()
        latency_ms = (free_at - sent) * 1000
        res.done += 1
        res.latencies_ms.append(latency_ms)
        res.sent_s.append(sent - start)
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
        "--arrival",
        choices=["uniform", "poisson", "trace"],
        help="open-loop arrivals: uniform (the default with --rate), poisson "
        "(needs --rate), trace (needs --trace)",
    )
    p.add_argument(
        "--trace",
        metavar="FILE",
        help='JSON {"offsets_s": [...], "period_s": P}: arrival offsets, looped',
    )
    p.add_argument(
        "--seed",
        type=int,
        help="poisson gaps' seed; uniform: a random phase from this seed "
        "(default: the first arrival at the start)",
    )
    p.add_argument(
        "--eager",
        metavar="DEVICE",
        help="no daemon: run the model here with plain torch on DEVICE "
        "(cpu, cuda), same arrivals and measurements (the bench's baseline)",
    )
    p.add_argument(
        "--latencies",
        action="store_true",
        help="include every latency (and when each request went out) in the JSON",
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
        arrivals=_arrivals(p, args),
        eager_device=args.eager,
    )
    out = res.summary()
    if args.latencies:
        out["latencies_ms"] = res.latencies_ms
        out["sent_s"] = res.sent_s
    print(json.dumps(out))
    return 0


def _arrivals(p: argparse.ArgumentParser, args: argparse.Namespace) -> Arrivals | None:
    kind = args.arrival or ("trace" if args.trace else None)
    if kind is None:
        kind = "uniform" if args.rate is not None else None
    if kind is None:
        return None
    try:
        if kind == "trace":
            if not args.trace:
                p.error("--arrival trace needs --trace FILE")
            return Arrivals.from_file(args.trace)
        return Arrivals(kind, args.rate, seed=args.seed)
    except (OSError, ValueError, KeyError) as exc:
        p.error(f"arrivals: {exc}")


if __name__ == "__main__":
    sys.exit(main())
