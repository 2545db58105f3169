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
