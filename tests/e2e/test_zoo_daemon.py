"""The model zoo, reduced to CPU size, through a real reefd process.

Each model is lowered, registered and run on the cpu backend through all three
ways in (compile, torch.compile(backend="reef"), `reef run`), and its outputs
are compared with torch eager on the same inputs: float32 on both sides, rtol
1e-4 and an absolute tolerance of 1e-4 times the largest eager output (batch
norm folded into convolutions reassociates the arithmetic, so logits near zero
differ by a few float32 ulps of the output's scale, not of their own).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import zoo
from reefd.clients import compile
from reefd.clients.client import Client
from reefd.clients.daemon import DaemonProcess
from reefd.errors import RequestError

RTOL = 1e-4

# The reduced variants the issue names: ResNet-50 at batch 1, MobileNetV2, ViT
# and DistilBERT at reduced depth, a reduced-width DenseNet, Inception blocks.
CPU_ZOO: dict[str, tuple[str, int, dict]] = {
    "resnet50": ("resnet50", 1, {"image": 64}),
    "mobilenet_v2": ("mobilenet_v2", 2, {"image": 64}),
    "vit_b16": ("vit_b16", 2, {"depth": 2, "image": 64}),
    "distilbert": ("distilbert", 2, {"layers": 2, "seq": 32}),
    "distilbert+mask": ("distilbert", 2, {"layers": 2, "seq": 32, "mask": True}),
    "densenet201": ("densenet201", 2, {"blocks": (2, 2), "growth": 8, "image": 64}),
    "inception_v3": ("inception_v3", 1, {"reduced": True}),
    "vgg19": ("vgg19", 2, {"image": 32, "width": 0.125, "hidden": 64}),
}


REPO = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    """One daemon for the module; its socket path (ipc paths must stay short)."""
    with tempfile.TemporaryDirectory(prefix="reef-", dir="/tmp") as tmp:
        sock = f"{tmp}/d.sock"
        with DaemonProcess(sock, backend="cpu"):
            yield sock


def _eager(model: torch.nn.Module, inputs: tuple) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = model(*inputs)
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def _assert_close(got, want) -> None:
    got = (got,) if isinstance(got, torch.Tensor) else tuple(got)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        scale = w.abs().max().item()
        torch.testing.assert_close(g, w, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("key", CPU_ZOO)
def test_compile_matches_eager(daemon, key):
    name, batch, overrides = CPU_ZOO[key]
    model, inputs = zoo.build(name, batch=batch, **overrides)
    remote = compile(model, inputs, socket=daemon, name=key)
    try:
        _assert_close(remote(*inputs), _eager(model, inputs))
    finally:
        remote.close()


@pytest.mark.parametrize("key", CPU_ZOO)
def test_torch_compile_backend_matches_eager(daemon, key):
    name, batch, overrides = CPU_ZOO[key]
    model, inputs = zoo.build(name, batch=batch, **overrides)
    compiled = torch.compile(
        model, backend="reef", options={"priority": "be", "socket": daemon}
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        got = compiled(*inputs)
    _assert_close(got, _eager(model, inputs))


@pytest.mark.parametrize("key", CPU_ZOO)
def test_reef_run_matches_eager(daemon, key, tmp_path):
    name, batch, overrides = CPU_ZOO[key]
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import torch
            from bench import zoo
            model, inputs = zoo.build({name!r}, batch={batch}, **{overrides!r})
            model.eval()
            with torch.no_grad():
                out = model(*inputs)
            torch.save(out, "out.pt")
            """
        )
    )
    before = _done(daemon)
    proc = subprocess.run(
        [sys.executable, "-m", "reefd.cli", "run", "--be", "--socket", daemon, "--"]
        + [sys.executable, str(app)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.returncode == 0, proc.stderr
    model, inputs = zoo.build(name, batch=batch, **overrides)
    _assert_close(torch.load(tmp_path / "out.pt"), _eager(model, inputs))
    assert _done(daemon) == before + 1, "the forward pass did not run on the daemon"


@pytest.mark.parametrize("key", ["mobilenet_v2", "distilbert+mask"])
def test_dynamic_batch_serves_every_size_up_to_the_maximum(daemon, key):
    name, _, overrides = CPU_ZOO[key]
    model, inputs = zoo.build(name, batch=4, **overrides)
    remote = compile(model, inputs, socket=daemon, name=key, max_batch=4)
    try:
        assert remote.lowered.batch is not None
        for batch in (1, 3, 4, 2):
            part = tuple(t[:batch] for t in inputs)
            _assert_close(remote(*part), _eager(model, part))
        _, too_many = zoo.build(name, batch=5, **overrides)
        with pytest.raises(RequestError, match="1..4"):
            remote(*too_many)
    finally:
        remote.close()


def _done(sock: str) -> int:
    with Client(sock) as c:
        m = c.status()["metrics"]
        return m["rt_done"] + m["be_done"]
