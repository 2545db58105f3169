"""Running a bench's cases, one daemon each, with progress and logs kept.

Owns `LiveSettings` (what every case of a live bench shares: backend, measured
seconds, extra daemon flags), `client_plan`/`case_plan` (harness plans whose
client processes are `bench.live.client`, so zoo models can be driven), and
`run_cases`: each case through `reefd.clients.harness.run_case` in a short
temporary directory, a progress line per case on stderr, a failed case
recorded (its error kept) instead of ending the run, and every case's daemon
and client logs copied to OUT/logs/ at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.live.models import model_key
from reefd.clients.harness import CasePlan, CaseResult, ClientPlan, run_case

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveSettings:
    backend: str = "auto"
    """Daemon backend: auto, cpu, cuda or sim."""
    duration_s: float = 10.0
    """Measured seconds per case."""
    reduced: bool = False
    """Drive the zoo's reduced variants (quick on a CPU)."""
    daemon_args: tuple[str, ...] = ()
    """Further reefd flags for every case (e.g. --preempt-flag device)."""


@dataclass(frozen=True)
class Outcome:
    """A case and what came of it: a result, or the error that stopped it."""

    plan: CasePlan
    result: CaseResult | None
    error: str | None = None


def client_plan(
    settings: LiveSettings,
    role: str,
    model: str,
    priority: str,
    rate_per_s: float | None = None,
    slo_ms: float | None = None,
) -> ClientPlan:
    return ClientPlan(
        role, model_key(model, settings.reduced), priority, rate_per_s, slo_ms
    )


def case_plan(
    settings: LiveSettings, label: str, policy: str, clients: Sequence[ClientPlan]
) -> CasePlan:
    pythonpath = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    return CasePlan(
        label=label,
        policy=policy,
        clients=tuple(clients),
        duration_s=settings.duration_s,
        backend=settings.backend,
        daemon_args=settings.daemon_args,
        client_module="bench.live.client",
        client_env=(("PYTHONPATH", pythonpath),),
    )


Planned = CasePlan | Callable[[Sequence[Outcome]], CasePlan]
"""A case, or a function of the outcomes so far that plans it when its turn
comes (an SLO derived from the RT-alone case, say)."""


def run_cases(
    plans: Sequence[Planned],
    out: Path,
    describe: Callable[[CaseResult], str] = lambda r: "",
) -> list[Outcome]:
    """Run the cases in order; `describe` gives each progress line's summary."""
    _exit_on_sigterm()
    outcomes: list[Outcome] = []
    tmp = Path(tempfile.mkdtemp(prefix="reef-bench-", dir="/tmp"))
    try:
        for i, item in enumerate(plans, 1):
            plan = item(outcomes) if callable(item) else item
            outcomes.append(_run_one(plan, tmp / f"c{i}", f"[{i}/{len(plans)}]"))
            if outcomes[-1].result is not None:
                _log(f"    {describe(outcomes[-1].result)}")
    finally:
        _keep_logs(tmp, out / "logs")
        shutil.rmtree(tmp, ignore_errors=True)
    return outcomes


def _run_one(plan: CasePlan, workdir: Path, tag: str) -> Outcome:
    clients = ", ".join(
        f"{c.priority.upper()} {c.model}"
        + (f" at {c.rate_per_s:g}/s" if c.rate_per_s else " closed loop")
        for c in plan.clients
    )
    _log(
        f"{tag} {plan.label}: policy {plan.policy}, {clients}; "
        f"{plan.duration_s:g} s measured ..."
    )
    started = time.monotonic()
    try:
        result = run_case(plan, workdir)
    except Exception as exc:  # one failed case must not lose the others
        why = f"{type(exc).__name__}: {exc}".replace("\n", "\n      ")
        _log(f"    FAILED after {time.monotonic() - started:.0f} s: {why}")
        return Outcome(plan, None, f"{type(exc).__name__}: {exc}")
    _log(f"    done in {result.wall_s:.0f} s on {result.device}")
    return Outcome(plan, result)


def _keep_logs(tmp: Path, dest: Path) -> None:
    for log in sorted(tmp.glob("c*/*.log")):
        target = dest / log.parent.name / log.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, target)


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every daemon and client gets stopped."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
