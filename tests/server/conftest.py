"""An in-process daemon (real server, engine and cpu device) on a temporary socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reefd.__main__ import Daemon, build
from reefd.config import load


@pytest.fixture
def daemon(sock_path: str) -> Iterator[Daemon]:
    config = load(
        None,
        socket_path=sock_path,
        backend="cpu",
        heartbeat_ms=100,
        heartbeat_timeout_ms=600,
        shutdown_grace_ms=2000,
    )
    d = build(config)
    d.start()
    yield d
    d.stop(config.shutdown_grace_ms)
