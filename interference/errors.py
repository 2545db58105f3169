"""The interference package's error: too little data, an unusable model file.

Owns `InterferenceError`, the ReefError every user-visible failure of
training, evaluating or loading the interference model raises (`reef-profile`
prints it in one line). Imports reefd.errors only.
"""

from __future__ import annotations

from reefd.errors import ReefError


class InterferenceError(ReefError):
    """The store holds too little to train or evaluate on, or a model file is
    missing, foreign or from an incompatible version."""

    code = "interference"
