"""The one error tree of reefd, each error with a stable wire code.

Every error a client can see travels as an ERROR message carrying `code` and
`message`; `from_wire` turns it back into the same class on the client side.
This module imports nothing from the rest of reefd.
"""

from __future__ import annotations


class ReefError(Exception):
    """Base of every error reefd raises on purpose."""

    code = "reef"


class ConfigError(ReefError):
    """A configuration value is missing, malformed or out of range."""

    code = "config"


class GraphError(ReefError):
    """A KernelGraph failed validation against the kernel catalog."""

    code = "graph"


class CompileError(ReefError):
    """NVRTC refused a kernel; `log` carries the compiler's log."""

    code = "compile"

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message if not log else f"{message}\n{log}")
        self.log = log


class BackendError(ReefError):
    """The device backend failed (for CUDA: names the CUresult)."""

    code = "backend"


class ProtocolError(ReefError):
    """A message could not be decoded or broke the protocol."""

    code = "protocol"


class UnknownModel(ReefError):
    """A request named a model id that is not registered for this client."""

    code = "unknown_model"


class RequestError(ReefError):
    """A well-formed request that cannot be served (bad inputs, limits)."""

    code = "request"


class Cancelled(ReefError):
    """The request was cancelled before it finished."""

    code = "cancelled"


class ShuttingDown(ReefError):
    """The daemon is stopping and accepts no new work."""

    code = "shutting_down"


class DaemonUnavailable(ReefError):
    """No daemon answered at the address the client used."""

    code = "unavailable"


class RequestTimeout(ReefError):
    """The daemon did not answer a request within the client's timeout."""

    code = "timeout"


class UnsupportedOp(ReefError):
    """The lowering met a torch op that no catalog kernel implements."""

    code = "unsupported_op"


class InternalError(ReefError):
    """A bug in reefd: an exception nobody raised on purpose."""

    code = "internal"


_BY_CODE: dict[str, type[ReefError]] = {
    cls.code: cls
    for cls in (
        ReefError,
        ConfigError,
        GraphError,
        CompileError,
        BackendError,
        ProtocolError,
        UnknownModel,
        RequestError,
        Cancelled,
        ShuttingDown,
        DaemonUnavailable,
        RequestTimeout,
        UnsupportedOp,
        InternalError,
    )
}


def from_wire(code: str, message: str) -> ReefError:
    """Rebuild the error a daemon sent; unknown codes become plain ReefError."""
    cls = _BY_CODE.get(code, ReefError)
    if cls is CompileError:
        return CompileError(message)
    return cls(message)
