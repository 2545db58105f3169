"""Shared test fixtures: temporary socket paths and tier markers."""

from __future__ import annotations

import ctypes.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cuda_driver() -> str | None:
    """None if a CUDA driver and a GPU are present, else the reason to skip."""
    if ctypes.util.find_library("cuda") is None:
        return "no CUDA driver (libcuda not found)"
    if not any(os.path.exists(f"/dev/nvidia{i}") for i in range(16)):
        return "CUDA driver present but no /dev/nvidia* device"
    return None


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    reason = _cuda_driver()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test skipped: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A short ipc socket path in a fresh directory (ipc paths must stay < 100
    bytes)."""
    with tempfile.TemporaryDirectory(prefix="reef-", dir="/tmp") as tmp:
        yield str(Path(tmp) / "d.sock")
