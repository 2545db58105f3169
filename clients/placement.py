"""Placement: which of several daemons (one per GPU) a new model should join.

Owns `place`: Usher's placement decision made with reefd's interference model.
The new model is known by its profile key (the graph key of its lowered graph,
reefd.profiler.identity); each daemon's `status` names the models it serves,
with their keys and priorities. A daemon's score is the worst predicted RT
slowdown the new model would bring there: for a BE model, that of every RT
model already there beside it; for an RT model, its own beside every BE model
there (and, since RT tasks run one at a time, nothing from other RT models).
The daemon with the lowest score wins; ties go to the one serving fewer
models, then to the order given. A pair the interference model does not know
scores as unknown (worse than any prediction), so a daemon where everything is
predicted wins over one where something is not.

Imports the client, the lowering pipeline and the interference model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reefd.errors import ReefError
from reefd.interference.model import InterferenceModel
from reefd.profiler.identity import graph_key

UNKNOWN = math.inf
"""The score of a pair the interference model does not know."""


@dataclass(frozen=True)
class DaemonScore:
    socket: str
    score: float
    """Worst predicted RT slowdown with the new model there (1.0: none)."""
    models: int
    """Models the daemon serves now."""
    worst_pair: tuple[str, str] | None
    """(RT model, BE model) names behind the score; None if nothing pairs."""


@dataclass(frozen=True)
class Placement:
    socket: str
    """The daemon to register the model with."""
    scores: tuple[DaemonScore, ...]
    """Every daemon's score, in the order given."""


def place(
    model: torch.nn.Module | str,
    daemons: Sequence[str],
    *,
    priority: str = "be",
    example_inputs: tuple[torch.Tensor, ...] = (),
    interference: InterferenceModel | str | Path | None = None,
) -> Placement:
    """The daemon (socket path) where `model` is predicted to interfere least.

    `model` is a torch module (lowered with `example_inputs` to find its
    profile key) or the key itself; `interference` a loaded model, a model
    file, or None for the state directory's. Every daemon must answer
    `status`; one that does not raises DaemonUnavailable naming it.
    """
    if not daemons:
        raise ReefError("place() needs at least one daemon socket")
    if priority not in ("rt", "be"):
        raise ReefError(f"priority={priority!r}: choose 'rt' or 'be'")
    key = model if isinstance(model, str) else _profile_key(model, example_inputs)
    table = (
        interference
        if isinstance(interference, InterferenceModel)
        else InterferenceModel.load(interference)
    )
    scores = tuple(
        score_daemon(table, key, priority, socket, _status(socket))
        for socket in daemons
    )
    best = min(range(len(scores)), key=lambda i: (scores[i].score, scores[i].models, i))
    return Placement(scores[best].socket, scores)


def score_daemon(
    table: InterferenceModel, key: str, priority: str, socket: str, status: dict
) -> DaemonScore:
    """How the new model (`key`, `priority`) would fare on a daemon whose
    `status` is given."""
    models = status.get("models", [])
    pairs: list[tuple[float, tuple[str, str]]] = []
    for resident in models:
        if resident.get("priority") == priority:
            continue  # RT beside RT runs one at a time; BE beside BE is not scored
        other, name = resident.get("profile_key", ""), resident.get("name", "?")
        if priority == "be":
            rt_key, be_key, names = other, key, (name, "new model")
        else:
            rt_key, be_key, names = key, other, ("new model", name)
        found = table.lookup(rt_key, be_key) if rt_key and be_key else None
        pairs.append((UNKNOWN if found is None else found.rt_slowdown, names))
    if not pairs:
        return DaemonScore(socket, 1.0, len(models), None)
    worst, names = max(pairs, key=lambda p: p[0])
    return DaemonScore(socket, worst, len(models), names)


def _profile_key(model: torch.nn.Module, example_inputs: tuple) -> str:
    from reefd.clients.lower import lower

    if not example_inputs:
        raise ReefError("place() needs example_inputs to lower a torch model")
    return graph_key(lower(model, example_inputs).graph)


def _status(socket: str) -> dict:
    from reefd.clients.client import Client

    client = Client(socket)
    try:
        return client.status()
    finally:
        client.close()
