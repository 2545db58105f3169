"""The cuda backend on a real GPU (marked gpu: skipped without a driver).

- Reduced zoo models (the CPU-size variants of tests/e2e/test_zoo_daemon.py) run
  through a real daemon on the cuda backend, as RT (plain kernels) and as BE
  (preemptible kernels), and match a daemon on the cpu backend within rtol 1e-3
  (float32, TF32 off in every kernel).
- A BE task preempted mid-kernel by the flag resumes from its counter, and its
  output is bit-identical to an unpreempted run (both flag placements); the
  time from raising the flag to the kernel's end is the preemption latency.
- Under a real daemon with RT and BE clients, preemptions happen and the
  daemon's own latency figures are recorded.

Figures go to the test report (`record_property`), to stdout (`-s`), and to
$REEFD_RESULTS_DIR/cuda_backend.json when that variable is set.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench import zoo
from reefd.backends import cuda_usable
from reefd.backends.cuda import CudaDevice
from reefd.backends.device import DeviceLaunch
from reefd.clients import compile
from reefd.clients.client import Client
from reefd.clients.daemon import DaemonProcess
from reefd.clients.lower import lower
from reefd.scheduler.plan import CompletionStatus, Form, Stream
from reefd.weight_pool import digest
from tests.e2e.test_zoo_daemon import CPU_ZOO

pytestmark = pytest.mark.gpu

RTOL = 1e-3
PREEMPT_ATTEMPTS = 20
"""Preemptions per call before one launch is let run to the end."""
RESULTS: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _usable() -> Iterator[None]:
    ok, why = cuda_usable()
    if not ok:
        pytest.skip(f"cuda backend cannot run here: {why}")
    yield
    if RESULTS and (out := os.environ.get("REEFD_RESULTS_DIR")):
        path = Path(out) / "cuda_backend.json"
        path.write_text(json.dumps(RESULTS, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def daemons() -> Iterator[dict[str, str]]:
    """A cpu-backend and a cuda-backend daemon; their socket paths."""
    with tempfile.TemporaryDirectory(prefix="reef-", dir="/tmp") as tmp:
        socks = {"cpu": f"{tmp}/c.sock", "cuda": f"{tmp}/g.sock"}
        log = os.environ.get("REEFD_RESULTS_DIR", tmp) + "/cuda_daemon.log"
        with (
            DaemonProcess(socks["cpu"], backend="cpu"),
            DaemonProcess(socks["cuda"], backend="cuda", log_path=log),
        ):
            yield socks


def _outputs(out: Any) -> tuple[torch.Tensor, ...]:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


@pytest.mark.parametrize("priority", ["rt", "be"])
@pytest.mark.parametrize("key", CPU_ZOO)
def test_zoo_model_on_cuda_matches_the_cpu_backend(daemons, key, priority):
    name, batch, overrides = CPU_ZOO[key]
    model, inputs = zoo.build(name, batch=batch, **overrides)
    got: dict[str, tuple[torch.Tensor, ...]] = {}
    for backend, sock in daemons.items():
        remote = compile(model, inputs, socket=sock, name=key, priority=priority)
        try:
            got[backend] = _outputs(remote(*inputs))
        finally:
            remote.close()
    for g, w in zip(got["cuda"], got["cpu"], strict=True):
        scale = w.abs().max().item()
        torch.testing.assert_close(g, w, rtol=RTOL, atol=RTOL * scale)


# --- preemption on the device itself -------------------------------------------------


def _big_mlp() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Kernels of several milliseconds (4096 x 4096 x 4096 fp32 GEMMs), so a
    flag raised 1 ms after a launch lands mid-kernel."""
    gen = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * p.shape[-1] ** -0.5)
    return model.eval(), (torch.randn(4096, 4096, generator=gen),)


def _wait(device: CudaDevice, want: int, timeout_s: float = 60.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want:
        assert time.monotonic() < deadline, "completions never came"
        got += device.poll()
        time.sleep(0.0002)
    return got


@pytest.mark.parametrize("flag", ["mapped", "device"])
def test_a_preempted_be_task_resumes_bit_identical(flag):
    device = CudaDevice(preempt_flag=flag)
    device.start(lambda: None)
    try:
        model, inputs = _big_mlp()
        low = lower(model, inputs)
        weights = {n: t.numpy().tobytes() for n, t in low.weights.items()}
        handle = device.load(
            low.graph, weights, {n: digest(b) for n, b in weights.items()}
        )
        frames = [t.numpy().tobytes() for t in inputs]
        calls = range(len(low.graph.calls))

        def launch(task_id: int, memory: Any, i: int) -> None:
            device.launch(
                DeviceLaunch(task_id, i, Stream.BE, Form.PREEMPTIBLE, handle, memory)
            )

        whole = device.alloc(handle, frames)
        for i in calls:
            launch(1, whole, i)
        assert {c.status for c in _wait(device, len(calls))} == {CompletionStatus.OK}

        memory = device.alloc(handle, frames)
        latencies, preemptions = [], 0
        for i in calls:
            for attempt in range(PREEMPT_ATTEMPTS + 1):
                launch(2, memory, i)
                time.sleep(0.001)
                raised_us = time.monotonic_ns() // 1000
                device.set_preempt(attempt < PREEMPT_ATTEMPTS)  # the last runs out
                (done,) = _wait(device, 1)
                device.set_preempt(False)
                assert done.status is not CompletionStatus.FAILED, done.error
                if done.status is CompletionStatus.OK:
                    break
                preemptions += 1
                latencies.append(max(0, done.end_us - raised_us))
        assert preemptions > 0, "no launch was preempted mid-kernel"
        (a,), (b,) = device.outputs(whole), device.outputs(memory)
        assert bytes(a) == bytes(b), "the preempted run differs from the whole run"
        want = model(*inputs).detach().flatten()
        got = torch.frombuffer(bytearray(a), dtype=torch.float32)
        torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL * want.abs().max())
        _record(
            f"preempt_{flag}",
            {
                "preemptions": preemptions,
                "latency_us_p50": statistics.median(latencies),
                "latency_us_max": max(latencies),
                "latencies_us": latencies,
                "device": device.describe(),
            },
        )
    finally:
        device.close()


# --- preemption through the daemon ----------------------------------------------------


def test_rt_requests_preempt_be_work_in_the_daemon(daemons):
    sock = daemons["cuda"]
    be_model, be_inputs = _big_mlp()
    rt_model, rt_inputs = zoo.build("resnet50", batch=1, image=64)
    be = compile(be_model, be_inputs, socket=sock, name="big", priority="be")
    rt = compile(rt_model, rt_inputs, socket=sock, name="rt", priority="rt")
    stop = threading.Event()

    def closed_loop() -> None:
        while not stop.is_set():
            be(*be_inputs)

    worker = threading.Thread(target=closed_loop, daemon=True)
    worker.start()
    try:
        want = rt_model(*rt_inputs).detach()
        rt_ms = []
        for _ in range(40):
            time.sleep(0.02)
            t0 = time.perf_counter()
            got = rt(*rt_inputs)
            rt_ms.append((time.perf_counter() - t0) * 1e3)
            scale = want.abs().max().item()
            torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL * scale)
    finally:
        stop.set()
        worker.join(timeout=60)
        be.close()
        rt.close()
    with Client(sock) as client:
        status = client.status()
    preemptions = status["preemptions"]
    _record(
        "daemon",
        {
            "preemptions": preemptions,
            "rt_latency_ms_p50": statistics.median(rt_ms),
            "rt_latency_ms_max": max(rt_ms),
            "device": status["daemon"]["device"],
        },
    )
    assert preemptions["count"] > 0


def _record(name: str, figures: dict[str, Any]) -> None:
    RESULTS[name] = figures
    print(f"\n{name}: {json.dumps(figures)}")
