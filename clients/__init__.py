"""reefd.clients: the client side — connect to a daemon, lower torch models, infer.

`Client` talks to one daemon; `compile` lowers a torch module and returns a
callable that runs it on the daemon. zmq lives only in `client.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reefd.clients.client import Client
    from reefd.clients.remote import RemoteModel, compile

__all__ = ["Client", "RemoteModel", "compile"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from reefd.clients.client import Client

        return Client
    if name in ("compile", "RemoteModel"):
        from reefd.clients import remote

        return getattr(remote, name)
    raise AttributeError(name)
