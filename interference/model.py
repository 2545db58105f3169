"""The interference model as the scheduler uses it: a table, read by dict lookup.

Owns `InterferenceModel`: a trained model file (train.py) turned into a table
over quantised task features. Each known task (a graph key: a model at one
batch) maps to its bin code (features.quantise); each pair of codes maps to a
`Prediction` computed once by the regressors, on the bins' centres (which is
exactly what they were trained on); and each pair of task keys maps straight
to its code pair's Prediction. A scheduling decision is one dict lookup:
`predict_rt_slowdown(rt_key, be_key)`, `safe(rt_key, be_key, slack)`.

Tasks enter the table from the model file (the tasks it was trained on), from
a store (`add_store`: every task profiled solo on the model's device) or one
at a time (`add_tasks`, e.g. after a new model is profiled). Adding tasks
runs the regressors for the new code pairs only, off the hot path. A pair the
table does not know gets `unknown`: the worst prediction in the table, and
`safe` says False for it.

The table holds one entry per ordered pair of known tasks (n^2 for n tasks).

Imports this package's train and features (and, through them, scikit-learn);
the store only when `add_store` is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from reefd.interference.features import Code, Features, pair_matrix, quantise
from reefd.interference.train import ModelFile, default_model_path

if TYPE_CHECKING:
    from reefd.profiler.store import Store


class Prediction(NamedTuple):
    """What the model says about an RT task beside a BE task."""

    rt_slowdown: float
    """Predicted RT slowdown (together / alone)."""
    rt_upper: float
    """Conservative RT slowdown (the quantile regressor; >= rt_slowdown)."""
    be_ratio: float
    """Predicted BE throughput together over alone."""


class InterferenceModel:
    """A lookup table over quantised features of the known tasks."""

    def __init__(self, model_file: ModelFile) -> None:
        self.file = model_file
        self.device = model_file.device
        self.names: dict[str, str] = dict(model_file.names)
        self._codes: dict[str, Code] = {}
        self._centres: dict[Code, Features] = {}
        self._by_code: dict[tuple[Code, Code], Prediction] = {}
        self._table: dict[tuple[str, str], Prediction] = {}
        self.unknown = Prediction(float("inf"), float("inf"), 0.0)
        """What a pair the table does not know gets: the worst known values."""
        self.add_tasks(model_file.tasks)

    @classmethod
    def load(
        cls, path: str | Path | None = None, store: Store | None = None
    ) -> InterferenceModel:
        """The model file at `path` (default: the state directory's), with a
        table over its training tasks and, if given, every task in `store`."""
        model = cls(ModelFile.load(path or default_model_path()))
        if store is not None:
            model.add_store(store)
        return model

    # --- building the table (not the hot path) ------------------------------------

    def add_tasks(self, tasks: Mapping[str, Features]) -> int:
        """Add tasks (graph key -> raw task features); returns how many code
        pairs were predicted anew."""
        config = self.file.trained.features
        for key, features in tasks.items():
            code, centres = quantise(features, config)
            self._codes[key] = code
            self._centres.setdefault(code, centres)
        codes = sorted(set(self._codes.values()), key=repr)
        todo = [(a, b) for a in codes for b in codes if (a, b) not in self._by_code]
        if todo:
            x = pair_matrix([(self._centres[a], self._centres[b]) for a, b in todo])
            est = self.file.trained.estimate_matrix(x)
            for i, pair in enumerate(todo):
                self._by_code[pair] = Prediction(
                    float(est.rt_slowdown[i]),
                    float(est.rt_upper[i]),
                    float(est.be_ratio[i]),
                )
        self._table = {
            (rt, be): self._by_code[(rt_code, be_code)]
            for rt, rt_code in self._codes.items()
            for be, be_code in self._codes.items()
        }
        if self._by_code:
            values = self._by_code.values()
            worst = max(p.rt_upper for p in values)
            self.unknown = Prediction(worst, worst, min(p.be_ratio for p in values))
        return len(todo)

    def add_store(self, store: Store) -> int:
        """Add every task `store` profiled solo on this model's device."""
        from reefd.interference.features import task_features

        config = self.file.trained.features
        tasks = store.latest_tasks(self.device.backend, self.device.device_name)
        for t in tasks:
            self.names.setdefault(t.graph_key, f"{t.model.name} b{t.batch}")
        return self.add_tasks(
            {t.graph_key: task_features(t, self.device, config) for t in tasks}
        )

    # --- the hot path: one dict lookup each ---------------------------------------

    def predict(self, rt_key: str, be_key: str) -> Prediction:
        """Everything known about RT task `rt_key` beside BE task `be_key`."""
        return self._table.get((rt_key, be_key), self.unknown)

    def lookup(self, rt_key: str, be_key: str) -> Prediction | None:
        """The prediction for a known pair; None for a pair the table lacks."""
        return self._table.get((rt_key, be_key))

    def predict_rt_slowdown(self, rt_key: str, be_key: str) -> float:
        """Predicted slowdown of RT task `rt_key` beside BE task `be_key`."""
        return self._table.get((rt_key, be_key), self.unknown)[0]

    def safe(self, rt_key: str, be_key: str, slack: float) -> bool:
        """Whether the conservative slowdown stays within 1 + `slack` (e.g.
        slack 0.1: at most 10 % slower); False for a pair the table lacks."""
        found = self._table.get((rt_key, be_key))
        return found is not None and found[1] <= 1.0 + slack

    # --- what it knows ------------------------------------------------------------

    def knows(self, key: str) -> bool:
        return key in self._codes

    @property
    def task_keys(self) -> list[str]:
        return sorted(self._codes)

    def code(self, key: str) -> Code:
        """The bin code of a known task."""
        return self._codes[key]

    def __len__(self) -> int:
        return len(self._table)
