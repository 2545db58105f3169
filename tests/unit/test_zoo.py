"""bench/zoo.py: reduced models are deterministic and shaped right; full-size models
(on the meta device) have the published parameter counts and output shapes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from bench import zoo

# Small variants that run in milliseconds on a CPU (resnet152 keeps its full depth).
REDUCED: dict[str, tuple[str, dict]] = {
    "resnet50": ("resnet50", {"image": 64}),
    "resnet152": ("resnet152", {"image": 32}),
    "densenet201": ("densenet201", {"blocks": (2, 2), "growth": 8, "image": 64}),
    "vgg19": ("vgg19", {"image": 32, "width": 0.125, "hidden": 64}),
    "inception_v3": ("inception_v3", {"reduced": True}),
    "mobilenet_v2": ("mobilenet_v2", {"image": 64}),
    "vit_b16": ("vit_b16", {"depth": 2, "image": 64}),
    "distilbert": ("distilbert", {"layers": 2, "seq": 32}),
    "distilbert+mask": ("distilbert", {"layers": 2, "seq": 32, "mask": True}),
}

# Published parameter counts (torchvision model cards; Hugging Face for DistilBERT).
# Inception v3 without its aux head: torchvision's 27,161,264 less the head's
# 768*128 + 2*128 (conv0+bn) + 128*768*25 + 2*768 (conv1+bn) + 768*1000 + 1000 (fc).
AUX_HEAD = 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000
PUBLISHED = {
    "resnet50": 25.56e6,
    "resnet152": 60.19e6,
    "densenet201": 20.01e6,
    "vgg19": 143.67e6,
    "inception_v3": 27_161_264 - AUX_HEAD,
    "mobilenet_v2": 3.50e6,
    "vit_b16": 86.57e6,
    "distilbert": 66.36e6,
}


def out_shape(name: str, batch: int, overrides: dict) -> tuple[int, ...]:
    if name == "distilbert":
        return (batch, overrides.get("seq", 128), overrides.get("hidden", 768))
    return (batch, overrides.get("num_classes", 1000))


def test_names_and_describe() -> None:
    assert set(zoo.NAMES) == set(PUBLISHED)
    for name in zoo.NAMES:
        line = zoo.describe(name)
        assert line.startswith(f"{name}: ") and "\n" not in line


@pytest.mark.parametrize("key", REDUCED)
def test_reduced_is_deterministic_and_shaped(key: str) -> None:
    name, overrides = REDUCED[key]
    m1, x1 = zoo.build(name, batch=2, **overrides)
    m2, x2 = zoo.build(name, batch=2, **overrides)
    assert not m1.training
    assert len(x1) == len(x2) == (2 if overrides.get("mask") else 1)
    for a, b in zip(x1, x2, strict=True):
        assert torch.equal(a, b)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    with torch.no_grad():
        y1, y2 = m1(*x1), m2(*x2)
    assert torch.equal(y1, y2)
    assert tuple(y1.shape) == out_shape(name, 2, overrides)
    assert torch.isfinite(y1).all()
    assert 1e-2 < y1.std().item() < 1e2  # neither vanished nor exploded
    assert not torch.equal(y1[0], y1[1])  # the two samples differ


@pytest.mark.parametrize("name", zoo.NAMES)
def test_full_size_param_count(name: str) -> None:
    count = zoo.count_params(name)
    assert count == zoo.PARAMS[name]
    assert abs(count - PUBLISHED[name]) <= 0.01 * PUBLISHED[name]


@pytest.mark.parametrize("name", zoo.NAMES)
def test_full_size_output_shape_on_meta(name: str) -> None:
    model, inputs = zoo.build_meta(name, batch=3)
    assert inputs[0].device.type == "meta"
    size = {"inception_v3": 299}.get(name, 224)
    if name != "distilbert":
        assert tuple(inputs[0].shape) == (3, 3, size, size)
    with torch.no_grad():
        out = model(*inputs)
    assert tuple(out.shape) == out_shape(name, 3, {})


def test_full_build_matches_meta_count() -> None:
    model, (x,) = zoo.build("mobilenet_v2")
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    assert tuple(x.shape) == (1, 3, 224, 224)


def test_unknown_overrides_raise_type_error() -> None:
    with pytest.raises(TypeError, match="depthh.*imgae"):
        zoo.build("vit_b16", depthh=2, imgae=64)
    with pytest.raises(TypeError, match="growth"):
        zoo.count_params("resnet50", growth=8)
    with pytest.raises(KeyError, match="resnet18"):
        zoo.build("resnet18")


def test_seed_changes_weights_and_inputs() -> None:
    m0, (x0,) = zoo.build("mobilenet_v2", image=32)
    m1, (x1,) = zoo.build("mobilenet_v2", image=32, seed=1)
    assert not torch.equal(x0, x1)
    w0, w1 = m0.state_dict(), m1.state_dict()
    assert not torch.equal(w0["classifier.1.weight"], w1["classifier.1.weight"])


def test_batch_norm_stats_are_non_trivial() -> None:
    model, _ = zoo.build("resnet50", image=32)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53
    for bn in bns:
        assert bn.running_var.min() >= 0.5 and bn.running_var.max() <= 1.5
        assert bn.running_var.std() > 0.1
        assert bn.running_mean.abs().max() > 0
        assert not torch.equal(bn.weight, torch.ones_like(bn.weight))


def test_reduced_inception_keeps_every_block_type() -> None:
    model, _ = zoo.build("inception_v3", reduced=True)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {f"Inception{k}" for k in "ABCDE"} <= kinds


def test_attention_mask_hides_padded_tokens() -> None:
    model, (ids, mask) = zoo.build("distilbert", batch=2, layers=2, seq=16, mask=True)
    assert mask[0].all() and not mask[1].all()
    keep = mask[1].bool()
    other = ids.clone()
    other[1, ~keep] = (other[1, ~keep] + 1) % 30522
    with torch.no_grad():
        y = model(ids, mask)
        y_other = model(other, mask)
        y_nomask = model(ids)
    torch.testing.assert_close(y_other[1, keep], y[1, keep])  # padding is invisible
    torch.testing.assert_close(y[0], y_nomask[0])  # an all-ones mask changes nothing


@pytest.mark.parametrize("name", ["vit_b16", "distilbert"])
def test_attention_exports_as_matmul_and_softmax(name: str) -> None:
    overrides = {
        "vit_b16": {"depth": 1, "image": 32},
        "distilbert": {"layers": 1, "seq": 16},
    }
    model, inputs = zoo.build(name, **overrides[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        graph = torch.export.export(model, inputs).run_decompositions().graph
    ops = {str(n.target) for n in graph.nodes if n.op == "call_function"}
    assert {"aten.bmm.default", "aten._softmax.default"} <= ops
    assert not any("scaled_dot_product" in op for op in ops)
