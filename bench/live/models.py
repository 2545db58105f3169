"""The models a live bench client can drive: the demo models and the zoo.

Owns the model table the bench's client processes use (`bench.live.client`
hands it to reefd.clients.loadgen): the small demo models by name
(`small_cnn`, `wide_cnn`, `mlp`), every bench/zoo.py model at full size by
name (`resnet152`), and its reduced variant as `<name>-reduced`. The reduced
variants of the five DISB models are `bench.workloads.REDUCED` (the same
ones `python -m reefd.sim --reduced` and `python -m bench run --reduced`
use); three more zoo models get small inputs or depth here. Factories build
nothing until called.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from bench import zoo
from bench.workloads import REDUCED as DISB_REDUCED
from reefd.demo_models import MODELS as DEMO_MODELS

Factory = Callable[[], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]

REDUCED: dict[str, dict[str, Any]] = {
    **DISB_REDUCED,
    "resnet50": {"image": 64},
    "mobilenet_v2": {"image": 64},
    "vit_b16": {"depth": 2, "image": 64},
}
"""Zoo overrides of each reduced variant (seconds to lower, milliseconds to run
on a CPU)."""

SUFFIX = "-reduced"


def model_key(name: str, reduced: bool) -> str:
    """The table key of zoo or demo model `name`, reduced where asked and one
    exists (demo models are small already and have no reduced variant)."""
    if name not in DEMO_MODELS and name not in zoo.NAMES:
        known = ", ".join([*DEMO_MODELS, *zoo.NAMES])
        raise ValueError(f"unknown model {name!r}; known: {known}")
    return f"{name}{SUFFIX}" if reduced and name in REDUCED else name


def _zoo(name: str, overrides: dict[str, Any]) -> tuple[torch.nn.Module, tuple]:
    return zoo.build(name, batch=1, **overrides)


def _table() -> dict[str, Factory]:
    table: dict[str, Factory] = dict(DEMO_MODELS)
    for name in zoo.NAMES:
        table[name] = partial(_zoo, name, {})
        if name in REDUCED:
            table[f"{name}{SUFFIX}"] = partial(_zoo, name, REDUCED[name])
    return table


MODELS: dict[str, Factory] = _table()
"""Every model a bench client can drive, by key (see `model_key`)."""
