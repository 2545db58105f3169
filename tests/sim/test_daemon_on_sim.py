"""The real `reefd` process on the sim backend: real clients and protocol,
simulated kernel timing, zero-filled outputs."""

from __future__ import annotations

import torch

from reefd.clients.daemon import DaemonProcess
from reefd.clients.remote import compile
from reefd.demo_models import mlp


def test_daemon_serves_on_the_sim_backend(sock_path: str, tmp_path) -> None:
    model, inputs = mlp()
    with DaemonProcess(
        sock_path, backend="sim", policy="reef", log_path=str(tmp_path / "d.log")
    ):
        rt = compile(model, inputs, priority="rt", slo_ms=50, socket=sock_path)
        be = compile(model, inputs, priority="be", socket=sock_path)
        try:
            for remote in (rt, be, rt):
                out = remote(*inputs)
                assert out.shape == model(*inputs).shape
                assert torch.count_nonzero(out) == 0  # outputs are not computed
        finally:
            rt.close()
            be.close()


def test_reef_pads_rt_launches_on_the_sim_daemon(sock_path: str, tmp_path) -> None:
    """The sim device knows its shape and every call's cost, so the daemon's
    reef policy pads RT calls with BE slices while a BE client keeps work
    queued; status counts the padded launches and names each model's key."""
    model, inputs = mlp()
    with DaemonProcess(
        sock_path, backend="sim", policy="reef", log_path=str(tmp_path / "d.log")
    ):
        rt = compile(model, inputs, priority="rt", slo_ms=50, socket=sock_path)
        be = compile(model, inputs, priority="be", socket=sock_path)
        try:
            pending = [be.submit(*inputs) for _ in range(200)]
            for _ in range(20):
                rt(*inputs)
            for future in pending:
                be.result(future, timeout_s=60)
            status = rt.client.status()
        finally:
            rt.close()
            be.close()
    assert status["padded_launches"] > 0
    keys = {m["profile_key"] for m in status["models"]}
    assert len(keys) == 1 and len(keys.pop()) == 64  # one graph, hashed once
