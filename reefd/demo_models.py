"""Small torch models the demo and the tests use (random weights, fixed seed).

`small_cnn` is the RT model: a few milliseconds per request on a CPU. `wide_cnn`
is the BE model: heavier kernels, so sharing the device with it visibly hurts a
policy that does not preempt. The DISB model zoo lives in bench/zoo.py.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCnn(nn.Module):
    """conv-bn-relu ×3 with a residual add, max/avg/adaptive pooling, a linear head."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(2)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = nn.AvgPool2d(2)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.stem(x))
        r = torch.relu(self.bn1(self.conv1(y)))
        y = torch.relu(self.bn2(self.conv2(r)) + y)
        return torch.softmax(self.head(self.down(y)), dim=-1)


class Mlp(nn.Module):
    def __init__(
        self, features: int = 256, hidden: int = 512, classes: int = 10
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _seeded(factory, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = factory().eval()
    with torch.no_grad():  # give batch norm non-trivial statistics to fold
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def small_cnn(batch: int = 1) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    model = _seeded(lambda: SmallCnn(width=16), seed=0)
    return model, (
        torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
    )


def wide_cnn(batch: int = 1) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    model = _seeded(lambda: SmallCnn(width=96), seed=2)
    return model, (
        torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(3)),
    )


def mlp(batch: int = 1) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    model = _seeded(Mlp, seed=4)
    return model, (torch.randn(batch, 256, generator=torch.Generator().manual_seed(5)),)


MODELS = {"small_cnn": small_cnn, "wide_cnn": wide_cnn, "mlp": mlp}
