"""The cpu backend on its own: load, alloc, launches (padded ones too), poll."""

from __future__ import annotations

import threading
import time

import torch

from reefd.backends.cpu import CpuDevice
from reefd.backends.device import DeviceLaunch, PadLaunch
from reefd.clients.lower import lower
from reefd.demo_models import mlp
from reefd.scheduler.plan import CompletionStatus, Form, Stream
from reefd.weight_pool import digest


def _load(device: CpuDevice, model, inputs):
    low = lower(model, inputs)
    weights = {name: t.numpy().tobytes() for name, t in low.weights.items()}
    handle = device.load(low.graph, weights, {n: digest(b) for n, b in weights.items()})
    memory = device.alloc(handle, [t.numpy().tobytes() for t in inputs])
    return low, handle, memory


def _poll(device: CpuDevice, want: int) -> list:
    got: list = []
    deadline = time.monotonic() + 30
    while len(got) < want:
        assert time.monotonic() < deadline, "completions never came"
        got += device.poll()
        time.sleep(0.001)
    return got


def test_a_padded_launch_runs_both_calls_and_reports_each():
    device = CpuDevice()
    device.start(threading.Event().set)
    try:
        model, inputs = mlp()
        low, rt, rt_mem = _load(device, model, inputs)
        _, be, be_mem = _load(device, model, inputs)
        n = len(low.graph.calls)
        for i in range(n):
            pad = PadLaunch(7, i, 16, be, be_mem)
            device.launch(DeviceLaunch(3, i, Stream.RT, Form.PADDED, rt, rt_mem, pad))
        done = _poll(device, 2 * n)
        assert [(c.task_id, c.call_index) for c in done] == [
            (t, i) for i in range(n) for t in (3, 7)
        ]
        assert {c.status for c in done} == {CompletionStatus.OK}
        want = model(*inputs)
        for memory in (rt_mem, be_mem):
            (out,) = device.outputs(memory)
            torch.testing.assert_close(
                torch.from_numpy(out).view_as(want), want, rtol=1e-5, atol=1e-6
            )
    finally:
        device.close()
