"""The benchmark model zoo: the DISB models in plain torch, random seeded weights.

No torchvision or transformers: every architecture is written out here, following
its reference (torchvision for the CNNs and ViT, Hugging Face for DistilBERT)
closely enough that parameter counts match the published ones exactly and FLOPs
match too (same layers, same shapes). Weights are random but deterministic: a
``torch.Generator`` seeded with ``seed`` (default 0) initialises every parameter and
buffer in module order, so two builds with the same arguments give bit-identical
models, and the example inputs come from a second generator (``seed + 1``).

Batch-norm layers get non-trivial running statistics (means uniform in
[-0.1, 0.1], variances uniform in [0.5, 1.5]) and affine parameters (gamma in
[0.8, 1.2], [0.05, 0.15] on ResNet's residual-branch BN; beta in [-0.1, 0.1]), so
that folding BN into convolutions is exercised for real. Convolutions are
He-normal (fan in), linears normal with std 1/sqrt(fan in), biases uniform in
[-0.1, 0.1]: activations and outputs stay O(1) to O(10) at full depth.
Dropout layers are kept (as in the references) and are the identity in eval mode.

    model, inputs = build("resnet50", batch=8)
    model, inputs = build("vit_b16", depth=2, image=64)   # reduced, for CPU tests
    with torch.no_grad():
        out = model(*inputs)

Overrides each model accepts (all models also accept ``seed``; anything else
raises ``TypeError``):

=============  ==============================================================
resnet50/152   image=224, num_classes=1000, layers=(3,4,6,3) / (3,8,36,3)
densenet201    image=224, num_classes=1000, growth=32, blocks=(6,12,48,32),
               init_features=64, bn_size=4
vgg19          image=224, num_classes=1000, width=1.0 (conv channel multiplier),
               hidden=4096 (classifier width)
inception_v3   image=299 (107 if reduced), num_classes=1000, reduced=False,
               width=1.0 (0.125 if reduced; channel multiplier)
mobilenet_v2   image=224, num_classes=1000, width=1.0 (width multiplier)
vit_b16        image=224, patch=16, depth=12, hidden=768, heads=12, mlp=3072,
               num_classes=1000
distilbert     seq=128, layers=6, hidden=768, heads=12, ffn=3072, vocab=30522,
               max_positions=512, mask=False (True: also pass an attention mask)
=============  ==============================================================

Attention (ViT, DistilBERT) is written out as matmul + softmax + matmul (no
``F.scaled_dot_product_attention``) so that ``torch.export`` shows those ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NAMES", "PARAMS", "build", "build_meta", "count_params", "describe"]

SEED = 0

# -- shared pieces ----------------------------------------------------------------


def _scaled(channels: int, width: float) -> int:
    """A channel count times a width multiplier (at least 1)."""
    return channels if width == 1.0 else max(1, round(channels * width))


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: q/k/v projections, (q k^T) / sqrt(d),
    softmax, times v, output projection. Same parameters as Hugging Face's
    ``MultiHeadSelfAttention`` and torchvision's ``nn.MultiheadAttention`` (4 d^2 + 4
    d)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.q_lin = nn.Linear(dim, dim)
        self.k_lin = nn.Linear(dim, dim)
        self.v_lin = nn.Linear(dim, dim)
        self.out_lin = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``bias``: an additive score bias broadcastable to [B, H, S, S] (a mask)."""
        b, s, d = x.shape
        h = self.heads
        q = self.q_lin(x).view(b, s, h, d // h).transpose(1, 2)
        k = self.k_lin(x).view(b, s, h, d // h).transpose(1, 2)
        v = self.v_lin(x).view(b, s, h, d // h).transpose(1, 2)
        q = q / math.sqrt(d // h)
        scores = torch.matmul(q, k.transpose(-1, -2))
        if bias is not None:
            scores = scores + bias
        weights = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(weights, v).transpose(1, 2).reshape(b, s, d)
        return self.out_lin(ctx)


def _image(batch: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, size, size, generator=gen),)


# -- ResNet ------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride is on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        # A small gamma on the residual branch's last BN (cf. torchvision's
        # zero_init_residual) keeps activations O(1) through 50 blocks of random
        # weights; with gamma ~1 there, ResNet-152's logits reach ~1e3.
        self.bn3.zoo_gamma = (0.05, 0.15)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet(nn.Module):
    """torchvision's ResNet with Bottleneck blocks (He et al. 2016, v1.5).

    ResNet-50 (3,4,6,3): 25,557,032 params, 4.09 GMACs at 224x224.
    ResNet-152 (3,8,36,3): 60,192,808 params, 11.5 GMACs at 224x224.
    """

    def __init__(self, layers: Sequence[int], num_classes: int = 1000) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet takes 4 stages, got layers={tuple(layers)}")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        inplanes = 64
        stages = []
        for i, n in enumerate(layers):
            planes = 64 * 2**i
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(inplanes, planes, stride))
                inplanes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# -- DenseNet ----------------------------------------------------------------------


class DenseLayer(nn.Module):
    """torchvision's _DenseLayer: BN-ReLU-conv1x1 (bn_size*growth) - BN-ReLU-conv3x3
    (growth) on the concatenation of all earlier features."""

    def __init__(self, in_features: int, growth: int, bn_size: int) -> None:
        super().__init__()
        mid = bn_size * growth
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_features, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleList):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_features),
            nn.ReLU(),
            nn.Conv2d(in_features, out_features, 1, bias=False),
            nn.AvgPool2d(2, 2),
        )


class DenseNet(nn.Module):
    """torchvision's DenseNet-BC (Huang et al. 2017), compression 0.5.

    DenseNet-201 (growth 32, blocks 6/12/48/32, bn_size 4, 64 initial features):
    20,013,928 params, 4.29 GMACs at 224x224.
    """

    def __init__(
        self,
        growth: int = 32,
        blocks: Sequence[int] = (6, 12, 48, 32),
        init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, init_features, 7, 2, padding=3, bias=False),
            nn.BatchNorm2d(init_features),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
        ]
        n = init_features
        for i, count in enumerate(blocks):
            layers.append(
                DenseBlock(
                    DenseLayer(n + j * growth, growth, bn_size) for j in range(count)
                )
            )
            n += count * growth
            if i != len(blocks) - 1:
                layers.append(Transition(n, n // 2))
                n //= 2
        layers.append(nn.BatchNorm2d(n))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(n, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


# -- VGG ---------------------------------------------------------------------------

_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M")
_VGG19 += (512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG(nn.Module):
    """torchvision's VGG-19 without batch norm (Simonyan & Zisserman 2015, config E):
    16 conv3x3+ReLU, 5 max pools, adaptive avg pool to 7x7, classifier
    4096-4096-1000 with dropout. 143,667,240 params, 19.6 GMACs at 224x224.
    """

    def __init__(
        self, width: float = 1.0, hidden: int = 4096, num_classes: int = 1000
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = _scaled(int(v), width)
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# -- Inception v3 ------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """conv (no bias) + BN (eps 0.001) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: Any, **kw: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_features: int, w: float = 1.0) -> None:
        super().__init__()
        c = lambda n: _scaled(n, w)  # noqa: E731
        self.branch1x1 = BasicConv2d(cin, c(64), 1)
        self.branch5x5_1 = BasicConv2d(cin, c(48), 1)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, padding=1)
        self.branch_pool = BasicConv2d(cin, c(pool_features), 1)
        self.out_channels = c(64) + c(64) + c(96) + c(pool_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int, w: float = 1.0) -> None:
        super().__init__()
        c = lambda n: _scaled(n, w)  # noqa: E731
        self.branch3x3 = BasicConv2d(cin, c(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, stride=2)
        self.out_channels = c(384) + c(96) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 module with factorised 7x7 convs (1x7 and 7x1)."""

    def __init__(self, cin: int, channels_7x7: int, w: float = 1.0) -> None:
        super().__init__()
        c = lambda n: _scaled(n, w)  # noqa: E731
        c7 = c(channels_7x7)
        self.branch1x1 = BasicConv2d(cin, c(192), 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, c(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, c(192), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, c(192), 1)
        self.out_channels = 4 * c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, cin: int, w: float = 1.0) -> None:
        super().__init__()
        c = lambda n: _scaled(n, w)  # noqa: E731
        self.branch3x3_1 = BasicConv2d(cin, c(192), 1)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, c(192), 1)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, stride=2)
        self.out_channels = c(320) + c(192) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks (1x3 and 3x1 side by side)."""

    def __init__(self, cin: int, w: float = 1.0) -> None:
        super().__init__()
        c = lambda n: _scaled(n, w)  # noqa: E731
        self.branch1x1 = BasicConv2d(cin, c(320), 1)
        self.branch3x3_1 = BasicConv2d(cin, c(384), 1)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, c(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, c(192), 1)
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionV3(nn.Module):
    """torchvision's Inception v3 (Szegedy et al. 2016) without the aux classifier
    (eval mode never uses it; ``transform_input`` off). 23,834,568 params (torchvision
    counts 27,161,264 with the 3,326,696-param aux head), 5.7 GMACs at 299x299.

    ``reduced``: the same stem, then one module of each kind (torchvision's A, B, C,
    D, E: the paper's 35x35, 17x17 and 8x8 modules and both grid reductions) instead
    of 3 A, 4 C and 2 E.
    """

    def __init__(
        self, width: float = 1.0, reduced: bool = False, num_classes: int = 1000
    ) -> None:
        super().__init__()
        c = lambda n: _scaled(n, width)  # noqa: E731
        self.Conv2d_1a_3x3 = BasicConv2d(3, c(32), 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3)
        self.maxpool2 = nn.MaxPool2d(3, 2)
        blocks: list[tuple[str, nn.Module]] = []
        n = c(192)

        def add(name: str, block: nn.Module) -> None:
            nonlocal n
            blocks.append((name, block))
            n = block.out_channels

        add("Mixed_5b", InceptionA(n, 32, width))
        if not reduced:
            add("Mixed_5c", InceptionA(n, 64, width))
            add("Mixed_5d", InceptionA(n, 64, width))
        add("Mixed_6a", InceptionB(n, width))
        add("Mixed_6b", InceptionC(n, 128, width))
        if not reduced:
            add("Mixed_6c", InceptionC(n, 160, width))
            add("Mixed_6d", InceptionC(n, 160, width))
            add("Mixed_6e", InceptionC(n, 192, width))
        add("Mixed_7a", InceptionD(n, width))
        add("Mixed_7b", InceptionE(n, width))
        if not reduced:
            add("Mixed_7c", InceptionE(n, width))
        for name, block in blocks:
            self.add_module(name, block)
        self.mixed = [name for name, _ in blocks]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(n, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool1(x)
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for name in self.mixed:
            x = getattr(self, name)(x)
        x = self.dropout(self.avgpool(x))
        return self.fc(torch.flatten(x, 1))


# -- MobileNet v2 ------------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's rounding of channel counts to a multiple of 8."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) - depthwise 3x3 (ReLU6) - linear project 1x1, with a
    residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, 1))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (Sandler et al. 2018), width 1.0: 3,504,872 params,
    0.30 GMACs at 224x224."""

    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, width: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        cin = _make_divisible(32 * width)
        last = _make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, ch, n, s in self.SETTINGS:
            cout = _make_divisible(ch * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(ConvBNReLU6(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# -- ViT ---------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, hidden: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attention = SelfAttention(hidden, heads)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Linear(mlp, hidden),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """torchvision's ViT-B/16 (Dosovitskiy et al. 2021): 16x16 patch conv, class
    token, learned position embedding, 12 pre-LN layers (hidden 768, 12 heads, MLP
    3072, GELU), final LayerNorm (eps 1e-6), linear head on the class token.
    86,567,656 params, 17.6 GMACs at 224x224."""

    def __init__(
        self,
        image: int = 224,
        patch: int = 16,
        depth: int = 12,
        hidden: int = 768,
        heads: int = 12,
        mlp: int = 3072,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if image % patch:
            raise ValueError(f"image {image} is not a multiple of patch {patch}")
        self.hidden = hidden
        self.conv_proj = nn.Conv2d(3, hidden, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos_embedding = nn.Parameter(
            torch.empty(1, (image // patch) ** 2 + 1, hidden)
        )
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(
            *(EncoderBlock(hidden, heads, mlp) for _ in range(depth))
        )
        self.ln = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, num_classes)

    def zoo_init(self, gen: torch.Generator) -> None:
        with torch.no_grad():
            self.class_token.normal_(0.0, 0.02, generator=gen)
            self.pos_embedding.normal_(0.0, 0.02, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)
        n = x.shape[0]
        x = x.reshape(n, self.hidden, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.dropout(x + self.pos_embedding)
        x = self.ln(self.layers(x))
        return self.head(x[:, 0])


# -- DistilBERT --------------------------------------------------------------------


class TransformerBlock(nn.Module):
    """Post-LN block of Hugging Face's DistilBERT: ln(x + attn(x)), then
    ln(x + ffn(x)), LayerNorm eps 1e-12, exact (erf) GELU."""

    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.sa_layer_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.lin1 = nn.Linear(hidden, ffn)
        self.activation = nn.GELU()
        self.lin2 = nn.Linear(ffn, hidden)
        self.dropout = nn.Dropout(0.1)
        self.output_layer_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = self.sa_layer_norm(self.attention(x, bias) + x)
        y = self.dropout(self.lin2(self.activation(self.lin1(x))))
        return self.output_layer_norm(y + x)


class DistilBert(nn.Module):
    """Hugging Face's DistilBertModel (Sanh et al. 2019), distilbert-base-uncased:
    word + position embeddings, LayerNorm, 6 blocks (hidden 768, 12 heads, FFN
    3072). Output: the last hidden state [B, S, 768]. 66,362,880 params, 5.59
    GMACs per sequence of 128 tokens.

    ``attention_mask`` (int, 1 = attend, 0 = padding, [B, S]) becomes an additive
    score bias of finfo.min on the padded keys, which gives the same result as
    Hugging Face's ``masked_fill`` (min + a finite score rounds to min)."""

    def __init__(
        self,
        layers: int = 6,
        hidden: int = 768,
        heads: int = 12,
        ffn: int = 3072,
        vocab: int = 30522,
        max_positions: int = 512,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.layer = nn.ModuleList(
            TransformerBlock(hidden, heads, ffn) for _ in range(layers)
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, s = input_ids.shape
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:s]
        x = self.dropout(self.LayerNorm(x))
        bias = None
        if attention_mask is not None:
            keep = attention_mask.to(x.dtype).view(b, 1, 1, s)
            bias = (1.0 - keep) * torch.finfo(x.dtype).min
        for block in self.layer:
            x = block(x, bias)
        return x


# -- initialisation ----------------------------------------------------------------


@torch.no_grad()
def _init(model: nn.Module, gen: torch.Generator) -> None:
    """Give every parameter and buffer seeded values, module by module."""
    done: set[int] = set()
    for module in model.modules():
        own = list(module.parameters(recurse=False)) + list(
            module.buffers(recurse=False)
        )
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
            if module.bias is not None:
                module.bias.uniform_(-0.1, 0.1, generator=gen)
        elif isinstance(module, nn.Linear):
            module.weight.normal_(
                0.0, math.sqrt(1.0 / module.in_features), generator=gen
            )
            if module.bias is not None:
                module.bias.uniform_(-0.1, 0.1, generator=gen)
        elif isinstance(module, nn.BatchNorm2d):
            low, high = getattr(module, "zoo_gamma", (0.8, 1.2))
            module.weight.uniform_(low, high, generator=gen)
            module.bias.uniform_(-0.1, 0.1, generator=gen)
            module.running_mean.uniform_(-0.1, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 1.5, generator=gen)
            module.num_batches_tracked.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.uniform_(0.8, 1.2, generator=gen)
            module.bias.uniform_(-0.1, 0.1, generator=gen)
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, 0.02, generator=gen)
        elif hasattr(module, "zoo_init"):
            module.zoo_init(gen)
        elif own:
            raise TypeError(f"no zoo initialiser for {type(module).__name__}")
        done.update(id(t) for t in own)
    missed = [n for n, t in model.named_parameters() if id(t) not in done]
    if missed:
        raise RuntimeError(f"parameters left uninitialised: {missed}")


# -- registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    summary: str
    params: int  # exact count of the full-size model
    defaults: dict[str, Any]
    make: Callable[[dict[str, Any]], nn.Module]
    inputs: Callable[[dict[str, Any], int, torch.Generator], tuple[torch.Tensor, ...]]


def _image_inputs(cfg: dict[str, Any], batch: int, gen: torch.Generator):
    return _image(batch, cfg["image"], gen)


def _bert_inputs(cfg: dict[str, Any], batch: int, gen: torch.Generator):
    seq = cfg["seq"]
    if seq > cfg["max_positions"]:
        raise ValueError(f"seq {seq} exceeds max_positions {cfg['max_positions']}")
    ids = torch.randint(0, cfg["vocab"], (batch, seq), generator=gen)
    if not cfg["mask"]:
        return (ids,)
    # Row i keeps its first seq - i*seq/(2*batch) tokens: row 0 is unpadded.
    lengths = seq - torch.arange(batch) * seq // (2 * batch)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)
    return ids, mask


_ENTRIES: dict[str, _Entry] = {
    "resnet50": _Entry(
        summary="ResNet-50 v1.5 (torchvision), 25.56M params, "
        "[B,3,224,224] -> [B,1000]",
        params=25_557_032,
        defaults={"image": 224, "num_classes": 1000, "layers": (3, 4, 6, 3)},
        make=lambda c: ResNet(c["layers"], c["num_classes"]),
        inputs=_image_inputs,
    ),
    "resnet152": _Entry(
        summary="ResNet-152 v1.5 (torchvision), 60.19M params, "
        "[B,3,224,224] -> [B,1000]",
        params=60_192_808,
        defaults={"image": 224, "num_classes": 1000, "layers": (3, 8, 36, 3)},
        make=lambda c: ResNet(c["layers"], c["num_classes"]),
        inputs=_image_inputs,
    ),
    "densenet201": _Entry(
        summary="DenseNet-201 (torchvision), 20.01M params, [B,3,224,224] -> [B,1000]",
        params=20_013_928,
        defaults={
            "image": 224,
            "num_classes": 1000,
            "growth": 32,
            "blocks": (6, 12, 48, 32),
            "init_features": 64,
            "bn_size": 4,
        },
        make=lambda c: DenseNet(
            c["growth"], c["blocks"], c["init_features"], c["bn_size"], c["num_classes"]
        ),
        inputs=_image_inputs,
    ),
    "vgg19": _Entry(
        summary="VGG-19 without BN (torchvision), 143.67M params, "
        "[B,3,224,224] -> [B,1000]",
        params=143_667_240,
        defaults={"image": 224, "num_classes": 1000, "width": 1.0, "hidden": 4096},
        make=lambda c: VGG(c["width"], c["hidden"], c["num_classes"]),
        inputs=_image_inputs,
    ),
    "inception_v3": _Entry(
        summary="Inception v3 without aux logits (torchvision), 23.83M params, "
        "[B,3,299,299] -> [B,1000]",
        params=23_834_568,
        defaults={"image": None, "num_classes": 1000, "reduced": False, "width": None},
        make=lambda c: InceptionV3(c["width"], c["reduced"], c["num_classes"]),
        inputs=_image_inputs,
    ),
    "mobilenet_v2": _Entry(
        summary="MobileNetV2 1.0 (torchvision), 3.50M params, "
        "[B,3,224,224] -> [B,1000]",
        params=3_504_872,
        defaults={"image": 224, "num_classes": 1000, "width": 1.0},
        make=lambda c: MobileNetV2(c["width"], c["num_classes"]),
        inputs=_image_inputs,
    ),
    "vit_b16": _Entry(
        summary="ViT-B/16 (torchvision), 86.57M params, [B,3,224,224] -> [B,1000]",
        params=86_567_656,
        defaults={
            "image": 224,
            "patch": 16,
            "depth": 12,
            "hidden": 768,
            "heads": 12,
            "mlp": 3072,
            "num_classes": 1000,
        },
        make=lambda c: VisionTransformer(**c),
        inputs=_image_inputs,
    ),
    "distilbert": _Entry(
        summary="DistilBERT base (Hugging Face), 66.36M params, "
        "int64 ids [B,128] (+ mask) -> [B,128,768]",
        params=66_362_880,
        defaults={
            "seq": 128,
            "layers": 6,
            "hidden": 768,
            "heads": 12,
            "ffn": 3072,
            "vocab": 30522,
            "max_positions": 512,
            "mask": False,
        },
        make=lambda c: DistilBert(
            c["layers"],
            c["hidden"],
            c["heads"],
            c["ffn"],
            c["vocab"],
            c["max_positions"],
        ),
        inputs=_bert_inputs,
    ),
}

NAMES: tuple[str, ...] = tuple(_ENTRIES)

#: Exact parameter counts of the full-size models (torchvision / Hugging Face).
PARAMS: dict[str, int] = {name: e.params for name, e in _ENTRIES.items()}


def _config(name: str, overrides: dict[str, Any]) -> tuple[_Entry, dict[str, Any]]:
    try:
        entry = _ENTRIES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(NAMES)}") from None
    unknown = sorted(set(overrides) - set(entry.defaults) - {"seed"})
    if unknown:
        raise TypeError(
            f"{name}: unknown override(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted([*entry.defaults, 'seed']))}"
        )
    cfg = {**entry.defaults, **overrides}
    cfg.pop("seed", None)
    if name == "inception_v3":
        if cfg["image"] is None:
            cfg["image"] = 107 if cfg["reduced"] else 299
        if cfg["width"] is None:
            cfg["width"] = 0.125 if cfg["reduced"] else 1.0
    return entry, cfg


def _module_cfg(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of the config the constructor takes (not input-only keys)."""
    drop = {"seq", "mask"} if name == "distilbert" else set()
    if name != "vit_b16":
        drop.add("image")
    return {k: v for k, v in cfg.items() if k not in drop}


def build(
    name: str, batch: int = 1, **overrides: Any
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """An eval-mode model with seeded random weights and seeded example inputs.

    ``overrides`` change the architecture or input size (see the module docstring);
    ``seed`` changes the weights and inputs. Unknown overrides raise TypeError.
    """
    model, inputs = build_meta(name, batch, **overrides)
    model = model.to_empty(device="cpu")
    _init(model, torch.Generator().manual_seed(int(overrides.get("seed", SEED))))
    return model.eval(), _inputs(name, batch, overrides)


def build_meta(
    name: str, batch: int = 1, **overrides: Any
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """``build`` on the meta device: no memory and no initialisation, for shapes,
    parameter counts and FLOP counts of full-size models in milliseconds."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    entry, cfg = _config(name, overrides)
    with torch.device("meta"):
        model = entry.make(_module_cfg(name, cfg))
    inputs = tuple(t.to("meta") for t in _inputs(name, batch, overrides))
    return model.eval(), inputs


def _inputs(name: str, batch: int, overrides: dict[str, Any]) -> tuple:
    entry, cfg = _config(name, overrides)
    gen = torch.Generator().manual_seed(int(overrides.get("seed", SEED)) + 1)
    return entry.inputs(cfg, batch, gen)


def count_params(name: str, **overrides: Any) -> int:
    """The model's parameter count, built on the meta device (no memory, no init)."""
    model, _ = build_meta(name, **overrides)
    return sum(p.numel() for p in model.parameters())


def describe(name: str) -> str:
    """One line: the model, its reference, parameter count and input/output."""
    entry, _ = _config(name, {})
    return f"{name}: {entry.summary}"
