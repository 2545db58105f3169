"""The `gpu` fixture: one driver context per test module, TF32 off in torch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.gpu.harness import Gpu


@pytest.fixture(scope="module")
def gpu() -> Iterator[Gpu]:
    pytest.importorskip("cuda.bindings.driver")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield Gpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
