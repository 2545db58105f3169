"""The pure scheduler: tasks, queues and policies; no clocks, sockets or devices.

`make_policy(name)` picks a policy by name with a lazy import.
"""

from __future__ import annotations

import importlib
from typing import Any

from reefd.config import POLICIES
from reefd.errors import ConfigError

_CLASSES = {
    "reef": ("reef", "ReefPolicy"),
    "fifo": ("fifo", "FifoPolicy"),
    "exclusive": ("exclusive", "ExclusivePolicy"),
    "streams": ("streams", "StreamsPolicy"),
    "wait": ("wait", "WaitPolicy"),
    "reset_hq": ("reset_hq", "ResetHqPolicy"),
}


def make_policy(name: str, **reef_options: Any):  # -> Policy
    """The policy called `name`; `reef_options` (device shape, interference
    model) go to the reef policy only."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown policy {name!r}; choose one of {list(POLICIES)}")
    module, cls = _CLASSES[name]
    policy_cls = getattr(importlib.import_module(f"reefd.scheduler.{module}"), cls)
    return policy_cls(**reef_options) if name == "reef" else policy_cls()
