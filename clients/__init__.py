"""reefd.clients: the client side — connect to a daemon, lower torch models, infer.

`Client` talks to one daemon; `compile` lowers a torch module and returns a
callable that runs it on the daemon; `place` picks, among several daemons,
the one where a new model is predicted to interfere least. zmq lives only in
`client.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reefd.clients.client import Client
    from reefd.clients.placement import place
    from reefd.clients.remote import RemoteModel, compile

__all__ = ["Client", "RemoteModel", "compile", "place"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from reefd.clients.client import Client

        return Client
    if name in ("compile", "RemoteModel"):
        from reefd.clients import remote

        return getattr(remote, name)
    if name == "place":
        from reefd.clients.placement import place

        return place
    raise AttributeError(name)
