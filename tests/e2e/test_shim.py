"""The three ways in: compile(), torch.compile(backend="reef") and `reef run`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from reefd.clients import compile
from reefd.clients.client import Client
from reefd.clients.daemon import DaemonProcess
from reefd.demo_models import small_cnn
from reefd.errors import UnsupportedOp


@pytest.fixture
def daemon(sock_path):
    with DaemonProcess(sock_path, backend="cpu") as d:
        yield d


def _done(sock_path: str) -> int:
    with Client(sock_path) as c:
        m = c.status()["metrics"]
        return m["rt_done"] + m["be_done"]


class WithCumSum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x), dim=-1)


def test_compile_runs_on_the_daemon(daemon, sock_path):
    model, inputs = small_cnn()
    remote = compile(model, inputs, priority="rt", slo_ms=50, socket=sock_path)
    try:
        for _ in range(3):
            torch.testing.assert_close(
                remote(*inputs), model(*inputs), rtol=1e-4, atol=1e-5
            )
    finally:
        remote.close()
    assert _done(sock_path) == 3


def test_compile_fallback_runs_locally_with_one_warning(daemon, sock_path):
    model = WithCumSum().eval()
    x = torch.randn(2, 8)
    with pytest.raises(UnsupportedOp, match="aten.cumsum"):
        compile(model, (x,), socket=sock_path)
    with pytest.warns(UserWarning, match="runs locally") as record:
        local = compile(model, (x,), socket=sock_path, fallback=True)
    assert len(record) == 1
    torch.testing.assert_close(local(x), model(x))
    assert _done(sock_path) == 0


def test_torch_compile_backend(daemon, sock_path):
    model, inputs = small_cnn()
    compiled = torch.compile(
        model, backend="reef", options={"priority": "be", "socket": sock_path}
    )
    with torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(
                compiled(*inputs), model(*inputs), rtol=1e-4, atol=1e-5
            )
    assert _done(sock_path) == 2


def test_reef_run_serves_an_unmodified_script(daemon, sock_path, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import torch
            from reefd.demo_models import small_cnn
            model, inputs = small_cnn()
            with torch.inference_mode():
                outs = [model(*inputs) for _ in range(4)]
            torch.save(outs[-1], "out.pt")
            """
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reefd.cli",
            "run",
            "--rt",
            "--slo-ms",
            "50",
            "--socket",
            sock_path,
            "--",
            sys.executable,
            str(app),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    model, inputs = small_cnn()
    with torch.no_grad():
        expected = model(*inputs)
    torch.testing.assert_close(
        torch.load(tmp_path / "out.pt"), expected, rtol=1e-4, atol=1e-5
    )
    assert _done(sock_path) == 4
