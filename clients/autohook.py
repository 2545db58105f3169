"""What `reef run` installs in the user's process: module calls go to the daemon.

`install()` wraps `torch.nn.Module.__call__`. The outermost module call made in
eval mode with gradients off (under `torch.no_grad()` or `torch.inference_mode()`),
with only tensor positional arguments, is lowered once per (module, input shapes)
and then served by the daemon; every other call runs as usual. A module whose ops
the catalog lacks runs locally after one warning. Settings come from the
environment `reef run` sets: REEFD_SOCKET, REEF_RUN_PRIORITY, REEF_RUN_SLO_MS.
The module is captured at its first call: later in-place weight changes are not
seen.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import torch
from torch import nn

_LOCAL = object()
_state = threading.local()
_cache: dict[tuple, Any] = {}
_original_call = None


def _depth() -> int:
    return getattr(_state, "depth", 0)


class _Nested:
    """Marks calls made while a module runs locally or is being lowered."""

    def __enter__(self) -> None:
        _state.depth = _depth() + 1

    def __exit__(self, *exc: object) -> None:
        _state.depth = _depth() - 1


def _eligible(module: nn.Module, args: tuple, kwargs: dict) -> bool:
    return (
        _depth() == 0
        and not module.training
        and not torch.is_grad_enabled()
        and not kwargs
        and bool(args)
        and all(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args)
    )


def _remote_for(module: nn.Module, args: tuple) -> Any:
    from reefd.clients.remote import compile, shared_client
    from reefd.errors import UnsupportedOp

    key = (id(module), tuple((tuple(a.shape), a.dtype) for a in args))
    remote = _cache.get(key)
    if remote is not None:
        return remote
    slo = os.environ.get("REEF_RUN_SLO_MS")
    try:
        with _Nested():
            remote = compile(
                module,
                args,
                priority=os.environ.get("REEF_RUN_PRIORITY", "be"),
                slo_ms=float(slo) if slo else None,
                client=shared_client(),
                name=type(module).__name__,
            )
    except UnsupportedOp as exc:
        print(f"reef run: {type(module).__name__} runs locally: {exc}", file=sys.stderr)
        remote = _LOCAL
    _cache[key] = remote
    return remote


def _call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    assert _original_call is not None
    if not _eligible(self, args, kwargs):
        return _original_call(self, *args, **kwargs)
    remote = _remote_for(self, args)
    if remote is _LOCAL:
        with _Nested():
            return _original_call(self, *args, **kwargs)
    return remote(*args)


def install() -> None:
    global _original_call
    if _original_call is None:
        _original_call = nn.Module.__call__
        nn.Module.__call__ = _call  # type: ignore[method-assign]
