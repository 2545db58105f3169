"""clients/lower_ops.py: each op family lowered, run by the reference runner, and
compared with torch eager; the peepholes checked by the kernels they leave."""

from __future__ import annotations

import collections
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reefd.clients.lower import Lowered, lower
from reefd.clients.lower_views import view_strides
from reefd.errors import UnsupportedOp
from reefd.graph import validate
from reefd.memory import run_graph


def _run(model: nn.Module, *inputs: torch.Tensor) -> Lowered:
    """Lower, run with the reference runner, compare with eager; the Lowered."""
    model.eval()
    low = lower(model, inputs)
    validate(low.graph)
    got = run_graph(
        low.graph, low.weights, dict(zip(low.input_names, inputs, strict=True))
    )
    with torch.no_grad():
        want = model(*inputs)
    want = (want,) if isinstance(want, torch.Tensor) else tuple(want)
    for name, expected in zip(low.output_names, want, strict=True):
        torch.testing.assert_close(got[name], expected, rtol=1e-5, atol=1e-6)
    return low


def _kernels(low: Lowered) -> collections.Counter:
    return collections.Counter(c.kernel for c in low.graph.calls)


class Fn(nn.Module):
    def __init__(self, fn, *params: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        self.p = nn.ParameterList([nn.Parameter(p) for p in params])

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs, *self.p)


X = torch.randn(2, 3, 4, 5)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.cat([x, x * 2, x[:, :1]], dim=1),
        lambda x: x.permute(0, 2, 3, 1).reshape(2, 20, 3),
        lambda x: x[:, 1] + x[:, 2],
        lambda x: x[..., 1:4:2].contiguous(),
        lambda x: x.transpose(1, 3).flatten(1),
        lambda x: x[:, :, :1].expand(2, 3, 4, 5) * x,
        lambda x: 1.0 - x,
        lambda x: 3.0 * x + 0.5,
        lambda x: x / 3.0,
        lambda x: x / 4.0,
        lambda x: x.mean(dim=(2, 3)),
        lambda x: x.mean(dim=1, keepdim=True),
        lambda x: x.mean(dim=-1),
        lambda x: torch.clamp(x, min=-0.5),
        lambda x: F.hardtanh(x, -0.25, 0.75),
        lambda x: torch.sigmoid(x) * torch.tanh(x),
        lambda x: F.silu(x) + F.hardswish(x),
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: x - x.mean(dim=-1, keepdim=True),
        lambda x: torch.softmax(x, dim=-1),
    ],
)
def test_views_and_elementwise(fn):
    _run(Fn(fn), X)


def test_linear_gelu_fuses_through_a_reshape():
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU())
    low = _run(model, torch.randn(2, 3, 8))
    assert _kernels(low) == {"linear": 1}
    assert low.graph.calls[0].params["act"] == "gelu"


def test_conv_relu6_fuses_and_bn_folds():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6())
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    low = _run(model, torch.randn(1, 3, 8, 8))
    assert _kernels(low) == {"conv2d": 1}
    assert low.graph.calls[0].params["act"] == "relu6"


class Attention(nn.Module):
    def __init__(self, d: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.heads = heads

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = (q / math.sqrt(d // self.heads)) @ k.transpose(-1, -2)
        bias = (1.0 - keep.to(x.dtype)).view(b, 1, 1, s) * -1e9
        weights = torch.softmax(scores + bias, dim=-1)
        return (weights @ v).transpose(1, 2).reshape(b, s, d)


def test_attention_reads_k_transposed_and_fuses_scale_and_mask():
    x = torch.randn(2, 5, 32)  # head size 16: the 1/4 scale is exact
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    low = _run(Attention(), x, keep)
    bmms = [c for c in low.graph.calls if c.kernel == "bmm"]
    assert bmms[0].params["trans_b"] and bmms[0].params["scale"] == 0.25
    softmax = next(c for c in low.graph.calls if c.kernel == "softmax")
    assert "mask" in softmax.args and softmax.params["mask_group"] == 2 * 5
    assert "binary" not in _kernels(low)


class Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.ln = nn.LayerNorm(6)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.ln(self.emb(ids))


def test_embedding_and_layer_norm_with_int64_ids():
    low = _run(Embed(), torch.tensor([[0, 3, 10], [5, 5, 1]]))
    assert _kernels(low) == {"embedding": 1, "layer_norm": 1}


def test_standalone_batch_norm_fuses_its_relu():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    with torch.no_grad():
        model[0].running_mean.uniform_(-1, 1)
    low = _run(model, torch.randn(2, 3, 4, 4))
    assert _kernels(low) == {"channel_affine": 1}


def test_broadcast_over_too_many_dims_is_unsupported_with_a_reason():
    fn = Fn(lambda x, y: x + y)
    x = torch.randn(2, 1, 3, 1, 4, 1)
    y = torch.randn(1, 5, 1, 6, 1, 7)
    with pytest.raises(UnsupportedOp, match="more than 4 dims"):
        lower(fn, (x, y))


def test_matmul_of_two_activations_is_a_bmm():
    low = _run(Fn(lambda a, b: a @ b), torch.randn(4, 6), torch.randn(6, 3))
    assert _kernels(low) == {"bmm": 1}


@pytest.mark.parametrize(
    ("shape", "perm", "new"),
    [
        ((2, 3, 4), (0, 1, 2), (6, 4)),
        ((2, 3, 4), (0, 2, 1), (2, 12)),
        ((2, 3, 4, 5), (0, 2, 1, 3), (2, 4, 15)),
        ((2, 3, 4, 5), (0, 1, 3, 2), (6, 5, 4)),
        ((6, 4), (1, 0), (2, 2, 6)),
    ],
)
def test_view_strides_agree_with_torch(shape, perm, new):
    base = torch.arange(math.prod(shape)).view(shape).permute(perm)
    got = view_strides(tuple(base.shape), base.stride(), new)
    try:
        want = base.view(new).stride()
    except RuntimeError:
        want = None
    if want is None:
        assert got is None
    else:
        assert got is not None
        size1 = [i for i, d in enumerate(new) if d == 1]
        assert [s for i, s in enumerate(got) if i not in size1] == [
            s for i, s in enumerate(want) if i not in size1
        ]
