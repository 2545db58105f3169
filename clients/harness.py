"""Harness: one measured case, a real daemon and its load-generating clients.

Owns the life of one case: start `reefd` (a DaemonProcess) with a backend, a
policy and options, in a temporary state directory; start the client processes
(`python -m reefd.clients.loadgen --wait-go`, or a module wrapping its `main`
with another model table) all at once, so they import and lower in parallel;
let them warm up one at a time, in plan order, each while the others wait
(warm-ups never overlap, so they cause no preemptions); give them all one start
time; collect each client's results (its JSON line, latencies measured in the
client); read the daemon's status at the end (device, preemption latencies);
and stop everything, on error too: no process started here outlives
`run_case`. Used by `reef demo` and the benchmarks in bench/.

A case with `eager_device` set starts no daemon: its clients run their
models in their own processes with plain torch on that device (the load
generator's `--eager`), with the same arrivals, warm-up, start and
measurements; it is the "what a user does today" baseline.

Imports the client side (DaemonProcess, Client) and the standard library; the
measuring itself is the load generator's.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from reefd.clients.client import Client
from reefd.clients.daemon import DaemonProcess


@dataclass(frozen=True)
class ClientPlan:
    """One client process: a model driven at a daemon."""

    role: str
    """Unique name of the client in its case ("rt", "be", "be2")."""
    model: str
    """A name in the client module's model table."""
    priority: str
    """"rt" or "be"."""
    rate_per_s: float | None = None
    """Requests per second, open loop (stale arrivals skipped); None: closed loop."""
    slo_ms: float | None = None
    """SLO an RT model registers with."""
    arrival: str | None = None
    """Open-loop arrivals: uniform, poisson or trace; None: uniform when
    rate_per_s is set, else closed loop."""
    seed: int | None = None
    """poisson: the gaps' seed; uniform: a random phase from it (None: the
    first arrival at the start)."""
    trace_s: tuple[float, ...] = ()
    """arrival="trace": arrival offsets in seconds, looped every trace_period_s."""
    trace_period_s: float | None = None


@dataclass(frozen=True)
class CasePlan:
    """A daemon, its clients and how long to measure them."""

    label: str
    policy: str
    clients: tuple[ClientPlan, ...]
    """Warmed up in this order."""
    duration_s: float
    """Measured seconds, the same window for every client."""
    backend: str = "auto"
    daemon_args: tuple[str, ...] = ()
    """Further `reefd` flags (e.g. ("--be-inflight-cap", "4"))."""
    client_module: str = "reefd.clients.loadgen"
    """`python -m` module of the client processes (takes the loadgen's flags)."""
    client_env: tuple[tuple[str, str], ...] = ()
    """Environment variables set for the client processes (e.g. PYTHONPATH)."""
    ready_timeout_s: float = 600.0
    """Longest a client may take to lower, register and warm up."""
    lead_s: float = 0.5
    """Time between the last client being ready and the window's start."""
    eager_device: str | None = None
    """No daemon: the clients run their models with plain torch on this device
    (cpu, cuda); `policy`, `backend` and `daemon_args` are unused."""


@dataclass(frozen=True)
class ClientResult:
    """What one client measured (reefd.clients.loadgen's summary)."""

    role: str
    model: str
    priority: str
    rate_per_s: float | None
    slo_ms: float | None
    duration_s: float
    done: int
    skipped: int
    errors: int
    slo_met: int
    p50_ms: float | None
    p99_ms: float | None
    throughput_per_s: float
    max_abs_err: float
    latencies_ms: tuple[float, ...] = field(repr=False)
    sent_s: tuple[float, ...] = field(default=(), repr=False)
    """When each measured request went out, seconds from the window's start."""
    arrival: str = "closed"

    @classmethod
    def from_json(cls, role: str, data: dict[str, Any]) -> ClientResult:
        return cls(
            role=role,
            latencies_ms=tuple(data.get("latencies_ms", ())),
            sent_s=tuple(data.get("sent_s", ())),
            arrival=str(data.get("arrival", "closed")),
            **{k: data[k] for k in _RESULT_KEYS},
        )


_RESULT_KEYS = (
    "model",
    "priority",
    "rate_per_s",
    "slo_ms",
    "duration_s",
    "done",
    "skipped",
    "errors",
    "slo_met",
    "p50_ms",
    "p99_ms",
    "throughput_per_s",
    "max_abs_err",
)


@dataclass(frozen=True)
class Preemptions:
    """The daemon's preemption latencies (BE reset until no BE kernel runs)."""

    count: int
    """Preemptions over the daemon's life."""
    before_window: int
    """How many of them came before the measured window (warm-up; 0 normally)."""
    p50_us: float | None
    p99_us: float | None
    max_us: float | None

    @classmethod
    def from_status(cls, status: dict[str, Any], before: int) -> Preemptions:
        p = status["preemptions"]
        return cls(p["count"], before, p["p50_us"], p["p99_us"], p["max_us"])


@dataclass(frozen=True)
class CaseResult:
    plan: CasePlan
    backend: str
    """The backend the daemon resolved (`auto` becomes cpu or cuda)."""
    device: str
    """The daemon's description of its device."""
    clients: dict[str, ClientResult]
    preemptions: Preemptions
    status: dict[str, Any] = field(repr=False)
    """The daemon's full status after the window ({} without a daemon)."""
    wall_s: float
    window_start_s: float = 0.0
    """When the measured window began, wall clock (time.time())."""

    @property
    def has_daemon(self) -> bool:
        return self.plan.eager_device is None


def run_case(plan: CasePlan, workdir: Path) -> CaseResult:
    """Run one case in `workdir` (logs and state go there; keep its path short:
    the socket lives in it). Raises RuntimeError naming the log to read when a
    process fails."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    if plan.eager_device is not None:
        return _run_eager(plan, workdir, started)
    sock = str(workdir / "d.sock")
    config = workdir / "reefd.toml"
    config.write_text(f"state_dir = {json.dumps(str(workdir / 'state'))}\n")
    daemon = DaemonProcess(
        sock,
        backend=plan.backend,
        policy=plan.policy,
        extra_args=["--config", str(config), *plan.daemon_args],
        log_path=str(workdir / "reefd.log"),
    )
    procs: list[_ClientProcess] = []
    try:
        daemon.start()
        procs += [_ClientProcess(plan, c, sock, workdir) for c in plan.clients]
        for proc in procs:
            proc.warm_up(plan.ready_timeout_s)
        backend, before = _snapshot(sock)
        results, start_at = _measure(plan, procs)
        with Client(sock, name="harness") as c:
            status = c.status()
    finally:
        for proc in procs:
            proc.kill()
        code = daemon.stop()
    if code != 0:
        raise RuntimeError(f"reefd exited {code} on SIGTERM; see {daemon.log_path}")
    return CaseResult(
        plan=plan,
        backend=backend,
        device=status["daemon"]["device"],
        clients=results,
        preemptions=Preemptions.from_status(status, before),
        status=status,
        wall_s=time.monotonic() - started,
        window_start_s=start_at,
    )


def _run_eager(plan: CasePlan, workdir: Path, started: float) -> CaseResult:
    """The clients alone, each running its model with plain torch."""
    procs: list[_ClientProcess] = []
    try:
        procs += [_ClientProcess(plan, c, None, workdir) for c in plan.clients]
        for proc in procs:
            proc.warm_up(plan.ready_timeout_s)
        results, start_at = _measure(plan, procs)
    finally:
        for proc in procs:
            proc.kill()
    return CaseResult(
        plan=plan,
        backend="eager",
        device=f"torch eager on {plan.eager_device}, no daemon",
        clients=results,
        preemptions=Preemptions(0, 0, None, None, None),
        status={},
        wall_s=time.monotonic() - started,
        window_start_s=start_at,
    )


def _measure(
    plan: CasePlan, procs: list[_ClientProcess]
) -> tuple[dict[str, ClientResult], float]:
    """Start every warmed-up client at one time; their results and that time."""
    start_at = time.time() + plan.lead_s
    for proc in procs:
        proc.go(start_at)
    timeout_s = plan.lead_s + plan.duration_s + 120
    return {p.plan.role: p.result(timeout_s) for p in procs}, start_at


def _snapshot(sock: str) -> tuple[str, int]:
    """The resolved backend and the preemptions so far."""
    with Client(sock, name="harness") as c:
        return str(c.info.get("backend", "?")), int(c.status()["preemptions"]["count"])


class _ClientProcess:
    """One client process; its stdout read by a thread, its stderr to a log."""

    def __init__(
        self, case: CasePlan, plan: ClientPlan, sock: str | None, workdir: Path
    ) -> None:
        self.plan = plan
        self.log_path = workdir / f"client-{plan.role}.log"
        if case.eager_device is not None:
            where = ["--eager", case.eager_device]
        else:
            assert sock is not None
            where = ["--socket", sock]
        args = [
            sys.executable,
            "-m",
            case.client_module,
            *where,
            "--model",
            plan.model,
            "--priority",
            plan.priority,
            "--duration",
            str(case.duration_s),
            "--wait-go",
            "--latencies",
        ]
        if plan.rate_per_s is not None:
            args += ["--rate", str(plan.rate_per_s)]
        if plan.slo_ms is not None:
            args += ["--slo-ms", str(plan.slo_ms)]
        args += _arrival_args(plan, workdir)
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **dict(case.client_env)},
        )
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_json(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line on stdout; None at end of output."""
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._failure("timed out") from None
            if line is None:
                return None
            if line.lstrip().startswith("{"):
                return json.loads(line)

    def _expect(self, state: str, deadline: float) -> None:
        data = self._next_json(deadline)
        if data is None or not data.get(state):
            raise self._failure(f"stopped before it was {state}")

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def warm_up(self, timeout_s: float) -> None:
        """Wait until registered, let it warm up, wait until it is ready."""
        deadline = time.monotonic() + timeout_s
        self._expect("registered", deadline)
        self._send("warm")
        self._expect("ready", deadline)

    def go(self, start_at: float) -> None:
        self._send(repr(start_at))
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def result(self, timeout_s: float) -> ClientResult:
        """The client's summary line. The process is not waited for: it has
        said BYE by then, and a torch process takes seconds to tear down;
        `kill` ends it."""
        data = self._next_json(time.monotonic() + timeout_s)
        if data is None or "done" not in data:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            raise self._failure(f"exited {self.proc.returncode} without results")
        return ClientResult.from_json(self.plan.role, data)

    def _failure(self, what: str) -> RuntimeError:
        self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        return RuntimeError(
            f"{self.plan.role} client ({self.plan.model}) {what}; "
            f"log {self.log_path}:\n{tail}"
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _arrival_args(plan: ClientPlan, workdir: Path) -> list[str]:
    """The load generator's arrival flags (a trace goes in a file)."""
    args = []
    if plan.arrival is not None:
        args += ["--arrival", plan.arrival]
    if plan.seed is not None:
        args += ["--seed", str(plan.seed)]
    if plan.arrival == "trace":
        if not plan.trace_s or plan.trace_period_s is None:
            raise ValueError(f"{plan.role}: a trace client needs trace_s and a period")
        path = workdir / f"trace-{plan.role}.json"
        trace = {"offsets_s": list(plan.trace_s), "period_s": plan.trace_period_s}
        path.write_text(json.dumps(trace))  # the load generator's --trace format
        args += ["--trace", str(path)]
    return args
