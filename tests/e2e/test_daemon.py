"""The real `reefd` process with real client processes on the cpu backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reefd.clients.client import Client
from reefd.clients.daemon import DaemonProcess
from reefd.clients.lower import lower
from reefd.demo_models import mlp
from reefd.errors import DaemonUnavailable


def _loadgen(
    sock: str, priority: str, model: str, start_at: float, duration_s: float, rate=None
):
    args = [
        sys.executable,
        "-m",
        "reefd.clients.loadgen",
        "--socket",
        sock,
        "--priority",
        priority,
        "--model",
        model,
        "--duration",
        str(duration_s),
        "--start-at",
        str(start_at),
    ]
    if rate:
        args += ["--rate", str(rate), "--slo-ms", "1000"]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run_rt_be(sock_dir: Path, policy: str, duration_s: float) -> dict[str, dict]:
    sock = str(sock_dir / f"{policy}.sock")
    with DaemonProcess(
        sock, backend="cpu", policy=policy, log_path=str(sock_dir / f"{policy}.log")
    ):
        start_at = time.time() + 6.0
        procs = {
            "rt": _loadgen(sock, "rt", "small_cnn", start_at, duration_s, rate=20),
            "be": _loadgen(sock, "be", "wide_cnn", start_at, duration_s),
        }
        out = {}
        for role, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
            out[role] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_rt_and_be_clients_share_the_daemon_and_reef_beats_fifo(tmp_path):
    dirs = Path(f"/tmp/reef-e2e-{os.getpid()}")
    dirs.mkdir(exist_ok=True)
    results = {p: _run_rt_be(dirs, p, duration_s=6.0) for p in ("reef", "fifo")}
    for policy, res in results.items():
        for role, r in res.items():
            assert r["errors"] == 0, (policy, role, r)
            assert r["done"] > 0, (policy, role, r)
            assert r["max_abs_err"] <= 1e-5, (policy, role, r)
    reef_p99, fifo_p99 = (
        results["reef"]["rt"]["p99_ms"],
        results["fifo"]["rt"]["p99_ms"],
    )
    print(f"RT p99: reef {reef_p99:.2f} ms, fifo {fifo_p99:.2f} ms")
    assert reef_p99 < fifo_p99


def test_sigkilled_client_is_released(tmp_path, sock_path):
    code = (
        "import sys, torch\n"
        "from reefd.clients import compile\n"
        "from reefd.demo_models import wide_cnn\n"
        "m, x = wide_cnn()\n"
        "r = compile(m, x, priority='be', socket=sys.argv[1], name='victim')\n"
        "print('registered', flush=True)\n"
        "while True:\n"
        "    r(*x)\n"
    )
    with DaemonProcess(
        sock_path, backend="cpu", extra_args=["--heartbeat-timeout-ms", "2000"]
    ):
        victim = subprocess.Popen(
            [sys.executable, "-c", code, sock_path], stdout=subprocess.PIPE, text=True
        )
        assert victim.stdout.readline().strip() == "registered"
        with Client(sock_path) as watcher:
            time.sleep(0.5)  # let it get requests in flight
            names = [m["name"] for m in watcher.status()["models"]]
            assert "victim" in names
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.monotonic()
            while "victim" in [m["name"] for m in watcher.status()["models"]]:
                assert time.monotonic() - killed_at < 2.0 + 1.0, (
                    "model not freed in time"
                )
                time.sleep(0.05)
            freed_after = time.monotonic() - killed_at
            status = watcher.status()
            assert all(c["name"] != "victim" for c in status["clients"])
            assert status["queues"]["live"] == 0
        print(f"freed {freed_after * 1000:.0f} ms after SIGKILL")


def test_sigterm_sends_dead_and_exits_zero(sock_path):
    daemon = DaemonProcess(sock_path, backend="cpu").start()
    model, inputs = mlp()
    low = lower(model, inputs)
    client = Client(sock_path)
    model_id = client.register(low.graph, low.weights, priority="rt", slo_ms=50)
    torch.testing.assert_close(client.infer(model_id, list(inputs))[0], model(*inputs))
    assert daemon.stop() == 0
    deadline = time.monotonic() + 5
    while client._dead is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(DaemonUnavailable, match="gone"):
        client.infer(model_id, list(inputs))
    client.close()
    assert not Path(sock_path).exists()


def test_reef_status_cli(sock_path):
    with DaemonProcess(sock_path, backend="cpu", policy="fifo"):
        model, inputs = mlp()
        low = lower(model, inputs)
        with Client(sock_path, name="status-test") as client:
            model_id = client.register(
                low.graph, low.weights, priority="rt", slo_ms=25, name="mlp-rt"
            )
            for _ in range(5):
                client.infer(model_id, list(inputs))
            out = subprocess.run(
                [sys.executable, "-m", "reefd.cli", "status", "--socket", sock_path],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
    assert "policy fifo" in out
    assert "RT: 5 done" in out
    assert "mlp-rt" in out and "status-test" in out


def test_reefd_refuses_a_second_daemon_on_the_same_socket(sock_path):
    with DaemonProcess(sock_path, backend="cpu"):
        proc = subprocess.run(
            [sys.executable, "-m", "reefd", "--backend", "cpu", "--socket", sock_path],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert "already serving" in proc.stderr


def test_backend_auto_says_what_it_picked(sock_path, tmp_path):
    log = tmp_path / "log"
    with DaemonProcess(sock_path, backend="auto", log_path=str(log)):
        pass
    text = log.read_text()
    assert "using the cpu backend" in text or "CUDA driver" in text
