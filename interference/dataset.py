"""The interference dataset: measured pairs joined with their tasks' features.

Owns reading a profile store into a `Dataset`: one row per distinct pair of
tasks (an RT model at one batch beside a BE model at one batch) measured on
one device, with the RT slowdown and the BE throughput ratio as targets, the
noise of each measurement, and the raw features of every task involved (from
its latest solo profile on the same device). A pair measured more than once
keeps every repeat's slowdown and its target is their median. Pairs whose
tasks have no solo profile on that device are left out and counted.

A task is named by its graph key (the content hash of its graph at its batch,
which the daemon computes from a registered graph; at batch 1 it equals the
model key); leave-one-model-out and pair grouping use the model key, so every
batch of a model is held out together.

Imports the standard library, numpy, the profiler's store and this package's
features and errors.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from reefd.interference.errors import InterferenceError
from reefd.interference.features import (
    DeviceFacts,
    FeatureConfig,
    Features,
    task_features,
)
from reefd.profiler.records import TaskProfile
from reefd.profiler.store import Store


@dataclass(frozen=True)
class PairRow:
    """One measured RT/BE pair of tasks (every repeat of it merged)."""

    rt_key: str
    """Graph key of the RT task (its model at its batch)."""
    be_key: str
    rt_model: str
    """Model key of the RT side (the graph key at batch 1)."""
    be_model: str
    rt_slowdown: float
    """RT median together / RT median alone; the median over repeats."""
    be_ratio: float
    """BE throughput together over alone (1 / BE slowdown); median of repeats."""
    rt_noise_rel: float
    """Half the 90 % bootstrap interval of the RT slowdown over its value
    (median over repeats): the noise of one measurement."""
    repeats: tuple[float, ...]
    """The RT slowdown of each measurement of this pair, oldest first."""

    @property
    def group(self) -> str:
        """The unordered pair of models: what GroupKFold keeps together."""
        return " + ".join(sorted((self.rt_model, self.be_model)))


@dataclass(frozen=True)
class Dataset:
    """Pair rows on one device and the features of every task they name."""

    rows: tuple[PairRow, ...]
    tasks: Mapping[str, Features]
    """Graph key -> raw task features (TASK_FEATURES)."""
    names: Mapping[str, str]
    """Graph key -> a human name of the task ('resnet50 b1')."""
    model_names: Mapping[str, str]
    """Model key -> the model's name ('resnet50')."""
    device: DeviceFacts
    source: str = ""
    """Where the rows came from (the store's path)."""
    skipped: int = 0
    """Pair measurements left out: a side had no solo profile on the device."""
    config: FeatureConfig = field(default_factory=FeatureConfig)

    def subset(self, index: Sequence[int] | np.ndarray) -> Dataset:
        """The same dataset with only rows `index` (tasks are kept: a held-out
        model's solo features are known; only its pairs are held out)."""
        return replace(self, rows=tuple(self.rows[int(i)] for i in index))

    @property
    def models(self) -> list[str]:
        """Model keys on either side of any row, sorted."""
        return sorted({r.rt_model for r in self.rows} | {r.be_model for r in self.rows})

    @property
    def groups(self) -> list[str]:
        return [r.group for r in self.rows]

    def rt_slowdown(self) -> np.ndarray:
        return np.array([r.rt_slowdown for r in self.rows], dtype=np.float64)

    def be_ratio(self) -> np.ndarray:
        return np.array([r.be_ratio for r in self.rows], dtype=np.float64)

    def pairs(self) -> list[tuple[Features, Features]]:
        """(RT task features, BE task features) per row."""
        return [(self.tasks[r.rt_key], self.tasks[r.be_key]) for r in self.rows]

    def describe(self) -> str:
        """'16 pairs (20 measurements) of 4 models on cpu: AMD EPYC'."""
        measured = sum(len(r.repeats) for r in self.rows)
        extra = f" ({measured} measurements)" if measured != len(self.rows) else ""
        return (
            f"{len(self.rows)} pairs{extra} of {len(self.models)} models on "
            f"{self.device.label}"
        )

    def require(
        self, *, pairs: int, models: int, purpose: str, model_pairs: int = 0
    ) -> Dataset:
        """Raise InterferenceError naming what is missing for `purpose`."""
        groups = len(set(self.groups))
        have = (
            f"{self.source or 'the store'} has {len(self.rows)} pair profiles on "
            f"{groups} model pair(s) of {len(self.models)} model(s) on "
            f"{self.device.label}"
        )
        for got, need, what in (
            (len(self.models), models, "models"),
            (groups, model_pairs, "model pairs"),
            (len(self.rows), pairs, "pair profiles"),
        ):
            if got < need:
                raise InterferenceError(
                    f"{have}; {purpose} needs at least {need} {what}"
                )
        return self


def _pick_device(rows: Sequence[Any], device: str | None, path: str) -> tuple[str, str]:
    """(backend, device_name) of the pairs to use: the one `device` names
    (backend, device name or 'backend: name'), else the one with most pairs."""
    counts = Counter((r["backend"], r["device_name"]) for r in rows)
    if not counts:
        raise InterferenceError(
            f"{path} has no pair profiles; measure solo profiles with "
            "`reef-profile run` and co-runs with `reef-profile pairs` first"
        )
    known = ", ".join(f"{b}: {d} ({n} pairs)" for (b, d), n in counts.most_common())
    if device is None:
        return counts.most_common(1)[0][0]
    chosen = [k for k in counts if device in (k[0], k[1], f"{k[0]}: {k[1]}")]
    if len(chosen) != 1:
        what = "no pair profiles on it" if not chosen else "it names several devices"
        raise InterferenceError(f"--device {device!r}: {what}; the store has {known}")
    return chosen[0]


def load_dataset(
    store: Store, *, device: str | None = None, config: FeatureConfig | None = None
) -> Dataset:
    """Every measured pair on one device (see `_pick_device`) with the features
    of its tasks; InterferenceError when nothing usable is stored."""
    config = (config or FeatureConfig()).check()
    _, pair_rows = store.rows("pairs")
    backend, device_name = _pick_device(pair_rows, device, str(store.path))
    on_device = [
        r
        for r in pair_rows
        if r["backend"] == backend and r["device_name"] == device_name
    ]
    sm_count = next((r["sm_count"] for r in on_device if r["sm_count"]), None)
    facts = DeviceFacts(backend, device_name, sm_count)
    solo = {
        (t.model.model_key, t.batch): t
        for t in store.latest_tasks(backend, device_name)
    }
    measured: dict[tuple, list] = defaultdict(list)
    missing: set[str] = set()
    for r in on_device:
        rt = solo.get((r["rt_model_key"], r["rt_batch"]))
        be = solo.get((r["be_model_key"], r["be_batch"]))
        for side, task in (("rt", rt), ("be", be)):
            if task is None:
                missing.add(f"{r[f'{side}_model']} batch {r[f'{side}_batch']}")
        if rt is not None and be is not None:
            measured[(rt.graph_key, be.graph_key)].append(r)
    if not measured:
        raise InterferenceError(
            f"{len(on_device)} pair profiles on {facts.label} in {store.path}, but "
            f"no solo profile of their models on that device; run `reef-profile "
            f"run` on {', '.join(sorted(missing))} first"
        )
    used = {key for pair in measured for key in pair}
    tasks = {t.graph_key: t for t in solo.values() if t.graph_key in used}
    return Dataset(
        rows=tuple(_row(tasks, pair, rs) for pair, rs in sorted(measured.items())),
        tasks={k: task_features(t, facts, config) for k, t in tasks.items()},
        names={k: f"{t.model.name} b{t.batch}" for k, t in tasks.items()},
        model_names={t.model.model_key: t.model.name for t in tasks.values()},
        device=facts,
        source=str(store.path),
        skipped=len(on_device) - sum(len(rs) for rs in measured.values()),
        config=config,
    )


def _row(
    tasks: Mapping[str, TaskProfile], pair: tuple[str, str], measured: Sequence[Any]
) -> PairRow:
    measured = sorted(measured, key=lambda r: r["pair_id"])
    slowdowns = tuple(float(r["rt_slowdown"]) for r in measured)
    noise = [
        (r["rt_slowdown_high"] - r["rt_slowdown_low"]) / (2.0 * r["rt_slowdown"])
        for r in measured
    ]
    rt, be = tasks[pair[0]], tasks[pair[1]]
    return PairRow(
        rt_key=pair[0],
        be_key=pair[1],
        rt_model=rt.model.model_key,
        be_model=be.model.model_key,
        rt_slowdown=statistics.median(slowdowns),
        be_ratio=statistics.median(1.0 / float(r["be_slowdown"]) for r in measured),
        rt_noise_rel=statistics.median(noise),
        repeats=slowdowns,
    )
