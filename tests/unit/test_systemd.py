"""The systemd unit and the sd_notify helper."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reefd.sdnotify import Notifier

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "reefd@.service"


def _directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_is_a_notify_template_with_watchdog():
    d = _directives()
    assert d["Type"] == ["notify"]
    assert d["RuntimeDirectory"] == ["reefd/%i"]
    assert d["StateDirectory"] == ["reefd"]
    assert d["DevicePolicy"] == ["closed"]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in d["Environment"]
    assert int(d["WatchdogSec"][0]) > 0
    assert "--gpu %i" in d["ExecStart"][0]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)
def test_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "reefd@0.service"
    # verify needs ExecStart to exist; point it at this interpreter's reefd.
    reefd = Path(sys.executable).parent / "reefd"
    assert reefd.exists(), f"{reefd} missing: is the package installed?"
    text = UNIT.read_text().replace("/usr/local/bin/reefd", str(reefd))
    unit.write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    # verify exits 0 on unknown keys but warns "Unknown key ..., ignoring".
    words = ("Unknown", "Invalid", "Failed", "failed", "ignoring", "rror")
    problems = [
        line for line in proc.stderr.splitlines() if any(w in line for w in words)
    ]
    assert proc.returncode == 0, proc.stderr
    assert not problems, proc.stderr


def test_notifier_sends_ready_and_watchdog(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    env = {
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "4000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    n = Notifier(env)
    assert n.enabled and n.watchdog_interval_s == 2.0
    assert n.ready("serving")
    assert server.recv(1024) == b"READY=1\nSTATUS=serving"
    assert n.watchdog()
    assert server.recv(1024) == b"WATCHDOG=1"
    server.close()


def test_notifier_is_silent_without_systemd():
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval_s == 0.0
    assert n.ready("x") is False


def test_watchdog_for_another_pid_is_ignored():
    n = Notifier(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    )
    assert n.watchdog_interval_s == 0.0
