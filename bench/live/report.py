"""Numbers to text and JSON for the live benches: cells, ratios, markdown
tables, a case as JSON, and a results file with only finite numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.live.runner import Outcome
from reefd.clients.harness import ClientResult


def cell(value: float | int | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}{suffix}"


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None where either is missing or base is 0."""
    if value is None or not base:
        return None
    out = value / base
    return out if math.isfinite(out) else None


def slo_attainment(client: ClientResult | None, slo_ms: float | None) -> float | None:
    """Share of the client's completed requests within `slo_ms`."""
    if client is None or slo_ms is None or not client.latencies_ms:
        return None
    met = sum(1 for lat in client.latencies_ms if lat <= slo_ms)
    return met / len(client.latencies_ms)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; the first column left-aligned, the rest right."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|---|" + "---:|" * (len(headers) - 1),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def case_json(outcome: Outcome) -> dict[str, Any]:
    """A case's plan, result (every client latency included) or error."""
    plan = asdict(outcome.plan)
    plan.pop("client_env")
    out: dict[str, Any] = {"label": outcome.plan.label, "plan": plan}
    if outcome.error is not None:
        out["error"] = outcome.error
    r = outcome.result
    if r is not None:
        out.update(
            backend=r.backend,
            device=r.device,
            wall_s=r.wall_s,
            clients={role: asdict(c) for role, c in r.clients.items()},
            preemptions=asdict(r.preemptions),
            daemon_metrics=r.status.get("metrics"),
            launches=r.status.get("launches"),
        )
    return out


def finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(data), indent=1, allow_nan=False) + "\n")
    return path
