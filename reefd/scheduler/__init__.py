"""The pure scheduler: tasks, queues and policies; no clocks, sockets or devices.

`make_policy(name)` picks a policy by name with a lazy import.
"""

from __future__ import annotations

from reefd.errors import ConfigError

POLICIES = ("reef", "fifo", "exclusive")


def make_policy(name: str):  # -> Policy
    if name == "reef":
        from reefd.scheduler.reef import ReefPolicy

        return ReefPolicy()
    if name == "fifo":
        from reefd.scheduler.fifo import FifoPolicy

        return FifoPolicy()
    if name == "exclusive":
        from reefd.scheduler.exclusive import ExclusivePolicy

        return ExclusivePolicy()
    raise ConfigError(f"unknown policy {name!r}; choose one of {list(POLICIES)}")
