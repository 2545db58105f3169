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
    "orion": ("orion", "OrionPolicy"),
}

_OPTIONS = {
    "reef": frozenset({"device", "interference"}),
    "orion": frozenset({"device"}),
}
"""The options each policy takes; the others take none. Explicit, not read
from the constructors: `wait` and `reset_hq` inherit reef's constructor but
get no device here, so they do not pad."""


def make_policy(name: str, **options: Any):  # -> Policy
    """The policy called `name`. `options` (device shape, interference model)
    go to the policies that take them (`reef`: both; `orion`: the device);
    the others ignore them."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown policy {name!r}; choose one of {list(POLICIES)}")
    module, cls = _CLASSES[name]
    policy_cls = getattr(importlib.import_module(f"reefd.scheduler.{module}"), cls)
    unknown = set(options).difference(*_OPTIONS.values())
    if unknown:
        raise TypeError(f"make_policy: unknown options {sorted(unknown)}")
    takes = _OPTIONS.get(name, frozenset())
    return policy_cls(**{k: v for k, v in options.items() if k in takes})
