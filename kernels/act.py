"""Activation epilogues shared by every kernel with an `act` param.

Owns `ACTS`, the choices of an `act` str param, whose order is ABI: the CUDA
side receives the index and kernels/src/reef_common.cuh defines
`REEF_ACT_<NAME>` for each (none = 0 and relu = 1 must stay put). Also owns
`apply_act`, the torch semantics every reference applies and `reef_act` in
the common header matches. Imports torch only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ACTS: tuple[str, ...] = (
    "none",
    "relu",
    "relu6",
    "gelu",
    "gelu_tanh",
    "silu",
    "sigmoid",
    "tanh",
    "hardswish",
)
"""Choices of an `act` param; the index of each is its value in the C args."""


def _none(t: torch.Tensor) -> torch.Tensor:
    return t


def _relu6(t: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(t, 0.0, 6.0)


def _gelu_tanh(t: torch.Tensor) -> torch.Tensor:
    return F.gelu(t, approximate="tanh")


_TORCH: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": _none,
    "relu": torch.relu,
    "relu6": _relu6,
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "hardswish": F.hardswish,
}


def apply_act(t: torch.Tensor, act: str) -> torch.Tensor:
    """`act` applied to `t` with torch's own function (a new tensor, or `t`
    itself for "none"); ValueError for a name outside ACTS."""
    try:
        fn = _TORCH[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; known: {list(ACTS)}") from None
    return fn(t)


def act_flops(act: str) -> int:
    """Operations per element the epilogue `act` costs (0 for "none")."""
    return 0 if act == "none" else 1
