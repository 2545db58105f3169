"""What the daemon loads of the interference model, and the hook it gives reef.

Owns `load_hook`: the `interference_model` setting resolved to a model file
(default: the state directory's, if `reef-profile train` wrote one), its table
extended with every task profiled in the state directory's store, and a hook
for `ReefPolicy` that looks a pair of tasks up by their profile keys. Runs at
daemon start, never on the engine thread's hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reefd.errors import ConfigError
from reefd.interference.train import MODEL_NAME

if TYPE_CHECKING:
    from reefd.interference.model import InterferenceModel

Hook = Callable[[Any, Any], "tuple[float, float] | None"]
"""(RT task, BE task) -> (predicted slowdown, conservative slowdown), or None
for a pair the table does not know (a task without a profile key included)."""

OFF = "off"


def hook_for(model: InterferenceModel) -> Hook:
    """The reef policy's view of `model`: a dict lookup by profile keys."""

    def predict(rt: Any, be: Any) -> tuple[float, float] | None:
        found = model.lookup(rt.profile_key, be.profile_key)
        return None if found is None else (found.rt_slowdown, found.rt_upper)

    return predict


def load_hook(setting: str, state_dir: Path) -> tuple[Hook | None, str]:
    """The hook for `setting` ('' = the state directory's model if any, 'off',
    or a model file path) and a line saying what was loaded."""
    if setting == OFF:
        return None, "interference model: off"
    path = Path(setting) if setting else state_dir / MODEL_NAME
    if not path.is_file():
        if setting:
            raise ConfigError(f"interference_model={setting!r}: no such file")
        return None, (
            f"interference model: none ({path} does not exist; "
            "`reef-profile train` writes it)"
        )
    from reefd.interference.model import InterferenceModel
    from reefd.profiler.store import DB_NAME, Store

    db = state_dir / DB_NAME
    store = Store.open(db, create=False) if db.is_file() else None
    try:
        model = InterferenceModel.load(path, store)
    finally:
        if store is not None:
            store.close()
    return hook_for(model), (
        f"interference model: {path} ({len(model.task_keys)} tasks known, "
        f"measured on {model.device})"
    )
