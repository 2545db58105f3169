"""What a live bench's results file records about its run: date, command, host,
versions, the daemon's backend and device, and the note on what its absolute
times mean (only a GPU run's count; elsewhere only the side-by-side ratios)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
from collections.abc import Sequence
from typing import Any

from bench.live.runner import LiveSettings, Outcome


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("reefd", "torch", "numpy", "pyzmq", "msgpack", "matplotlib"):
        out[package] = _version(package)
    return out


def device_of(outcomes: Sequence[Outcome]) -> tuple[str, str]:
    """(backend, device description) as the first daemon that ran reported."""
    for o in outcomes:
        if o.result is not None:
            return o.result.backend, o.result.device
    return "unknown", "unknown (no case ran)"


def timing_note(backend: str, device: str) -> str:
    if backend == "cuda":
        return f"absolute times are from a GPU: {device}"
    return (
        f"NOTE: backend {backend} ({device}): absolute times here are NOT GPU "
        "figures; only the ratios, measured side by side in this run, mean "
        "anything"
    )


def run_meta(
    prog: str, argv: Sequence[str], settings: LiveSettings, outcomes: Sequence[Outcome]
) -> dict[str, Any]:
    backend, device = device_of(outcomes)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", prog, *argv]),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "backend_requested": settings.backend,
        "backend": backend,
        "device": device,
        "gpu_figures": backend == "cuda",
        "note": timing_note(backend, device),
        "versions": versions(),
    }
