"""clients/lower.py: torch.export -> KernelGraph, checked against torch eager."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reefd.clients.lower import Lowered, lower
from reefd.errors import UnsupportedOp
from reefd.graph import Role, validate
from reefd.memory import run_graph


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.adapt = nn.AdaptiveAvgPool2d((2, 2))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(F.relu(self.bn1(self.conv1(x))))
        y = F.relu(y + F.relu(self.conv2(y)))
        y = torch.flatten(self.adapt(self.avg(y)), 1)
        return torch.softmax(self.fc(y), dim=-1)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class TwoInTwoOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(12, 6, bias=False)

    def forward(
        self, img: torch.Tensor, vec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.conv(img).mean((2, 3))  # [2, 6], no keepdim
        feat = self.fc(vec)
        return pooled + feat, torch.relu(pooled)


class Passthrough(nn.Module):
    """Outputs that alias an input, or each other, need a copy kernel."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = torch.relu(x)
        return x.flatten(1), y, y.view(2, -1)


class CumSum(nn.Module):
    """A running sum: the catalog has no scan kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x), dim=-1)


def _randomize_bn(bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)


def _check(model: nn.Module, inputs: tuple[torch.Tensor, ...], lowered: Lowered):
    validate(lowered.graph)
    feeds = dict(zip(lowered.input_names, inputs, strict=True))
    got = run_graph(lowered.graph, lowered.weights, feeds)
    with torch.no_grad():
        want = model(*inputs)
    want = (want,) if isinstance(want, torch.Tensor) else tuple(want)
    assert len(want) == len(lowered.output_names)
    for name, expected in zip(lowered.output_names, want, strict=True):
        torch.testing.assert_close(got[name], expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, tuple[torch.Tensor, ...], Lowered]:
    torch.manual_seed(0)
    model = SmallCNN()
    _randomize_bn(model.bn1)
    inputs = (torch.randn(2, 3, 16, 16),)
    return model, inputs, lower(model, inputs)


def _kernels(lowered: Lowered) -> list[str]:
    return [c.kernel for c in lowered.graph.calls]


def test_cnn_matches_eager_with_bn_folded_relu_fused_and_no_flatten_kernel(cnn):
    model, inputs, lowered = cnn
    _check(model, inputs, lowered)
    assert _kernels(lowered) == [
        "conv2d",
        "max_pool2d",
        "conv2d",
        "add",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "linear",
        "softmax",
    ]
    convs = [c for c in lowered.graph.calls if c.kernel == "conv2d"]
    assert [c.params["act"] for c in convs] == ["relu", "relu"]
    assert convs[0].args["w"] == "w:conv1.weight+bn1"
    assert convs[0].args["bias"] == "w:conv1.bias+bn1"
    assert not [n for n in lowered.weights if "bn1." in n or n == "w:conv1.weight"]
    add = next(c for c in lowered.graph.calls if c.kernel == "add")
    assert add.params["act"] == "relu"
    assert lowered.input_names == ["in0"] and lowered.output_names == ["out0"]
    assert lowered.weight_bytes == sum(4 * t.numel() for t in lowered.weights.values())


def test_weights_match_their_buffers(cnn):
    _, _, lowered = cnn
    for buf in lowered.graph.weights:
        tensor = lowered.weights[buf.name]
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
        assert tuple(tensor.shape) == buf.shape
    assert lowered.weights["w:fc.weight"].shape == (10, 32)


def test_every_call_names_its_source_line(cnn):
    _, _, lowered = cnn
    for call in lowered.graph.calls:
        assert "test_lower.py:" in call.where and " in forward" in call.where


def test_mlp_matches_eager_with_relu_fused():
    torch.manual_seed(1)
    model, inputs = MLP(), (torch.randn(5, 16),)
    lowered = lower(model, inputs)
    _check(model, inputs, lowered)
    assert _kernels(lowered) == ["linear", "linear"]
    assert [c.params["act"] for c in lowered.graph.calls] == ["relu", "none"]


def test_two_inputs_two_outputs():
    torch.manual_seed(2)
    model = TwoInTwoOut()
    inputs = (torch.randn(2, 4, 8, 8), torch.randn(2, 12))
    lowered = lower(model, inputs, name="two")
    _check(model, inputs, lowered)
    assert lowered.graph.name == "two"
    assert lowered.input_names == ["in0", "in1"]
    assert lowered.output_names == ["out0", "out1"]
    assert [b.shape for b in lowered.graph.outputs] == [(2, 6), (2, 6)]
    # pooled is read by the add and by a relu, so that relu cannot be fused.
    assert "relu" in _kernels(lowered)


def test_outputs_aliasing_inputs_or_each_other_are_copied():
    model, inputs = Passthrough(), (torch.randn(2, 3, 4),)
    lowered = lower(model, inputs)
    _check(model, inputs, lowered)
    assert _kernels(lowered) == ["relu", "copy", "copy"]


def test_scratch_reuse_keeps_results_and_saves_bytes(cnn):
    model, inputs, reused = cnn
    plain = lower(model, inputs, reuse_scratch=False)
    _check(model, inputs, plain)
    _check(model, inputs, reused)
    assert _kernels(plain) == _kernels(reused)
    assert len(plain.graph.by_role(Role.SCRATCH)) == 7
    assert reused.scratch_bytes < plain.scratch_bytes


def test_unsupported_op_names_op_and_source_line():
    lines, first = inspect.getsourcelines(CumSum.forward)
    line = first + next(i for i, s in enumerate(lines) if "torch.cumsum" in s)
    with pytest.raises(UnsupportedOp) as info:
        lower(CumSum(), (torch.randn(2, 8),))
    message = str(info.value)
    assert "aten.cumsum.default" in message
    assert f"test_lower.py:{line}" in message
    assert "[2, 8]" in message


def test_non_float32_input_is_unsupported():
    with pytest.raises(UnsupportedOp, match="float64"):
        lower(MLP(), (torch.randn(5, 16, dtype=torch.float64),))


class LoneBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


def test_batch_norm_without_a_conv_before_it_is_a_channel_affine():
    model = LoneBatchNorm().eval()
    _randomize_bn(model.bn)
    x = torch.randn(2, 3, 4, 4)
    low = lower(model, (x,))
    assert [c.kernel for c in low.graph.calls] == ["channel_affine"]
    _check(model, (x,), low)
