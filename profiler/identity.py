"""Model identity: a content hash of a lowered graph's kernel sequence.

Owns `graph_key`: SHA-256 over the ordered (kernel name, params with defaults
filled in) of every call. Buffer names and bindings, weights and source lines
are left out: two graphs with the same key launch the same kernels with the
same shapes, so they have the same timing profile. A model's `model_key` is
the `graph_key` of its graph at batch 1; each stored task also keeps the
`graph_key` at its own batch, which is what the daemon can compute from the
graph a client registered.

Imports the standard library and reefd's graph and kernel catalog only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reefd.graph import KernelGraph
from reefd.kernels import catalog

KEY_FORMAT = 1
"""Bumped if what the hash covers changes (it is part of the hashed text)."""


def canonical_params(kernel: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params with defaults filled in and tuples as lists (JSON's form)."""
    full = catalog.get(kernel).with_defaults(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}


def graph_key(graph: KernelGraph) -> str:
    """The content hash of `graph`'s kernel sequence (64 hex digits)."""
    calls = [[c.kernel, canonical_params(c.kernel, c.params)] for c in graph.calls]
    text = json.dumps([KEY_FORMAT, calls], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
