"""Honest evaluation: held-out splits, every predictor, one table.

Owns the splits, running every predictor (baselines.py) on each, scoring the
held-out predictions (metrics.py) and the report `reef-profile evaluate`
prints (markdown) and writes (JSON; the PNG is plot.py's).

Splits (no pair is ever scored by a model that saw it):
- `lomo`, leave one model out: for each model M, train on the pairs without
  M and predict every pair with M on either side (all of M's batches). A pair
  of two models is held out twice (once per model) and scored both times. The
  question it answers: how good is the model on a model it never saw co-run?
- `pairs`: GroupKFold over unordered model pairs (A beside B and B beside A,
  at every batch, stay in one fold), min(--folds, model pairs) folds; each
  pair is predicted once.

Metrics, over the held-out predictions p and measurements m of RT slowdown
(median together / median alone), pooled over folds:
- MAPE %: 100 * mean(|p - m| / m).
- p90 abs err: 90th percentile of |p - m| (slowdown units: 0.05 = 5 points).
- Kendall tau: for each RT task with >= 3 BE partners (in `lomo`, within one
  fold), tau-b between predicted and measured slowdowns across its partners,
  averaged over those RT tasks; all-tied predictions score 0. In `pairs` an
  RT task's partners are spread over folds, so its ranking pools predictions
  of different fits (even a per-fold constant can then rank): `lomo` is the
  split the ranking metrics are meant for.
- top-1 regret: for each RT task with >= 2 partners, measured slowdown of the
  partner predicted best (ties: their mean) minus the measured best; averaged.
- false-safe %: of the pairs predicted at or under the SLO slowdown
  threshold, the share measured above it ("predicted safe" says how many
  pairs were predicted safe; a predictor that never says safe scores 0).
- BE MAPE %: the same MAPE for the BE throughput ratio, where a predictor
  predicts one.
- noise floor: how far one measurement of a pair lies from another: from
  repeated measurements where a pair has them (leave one repeat out), else
  half the 90 % bootstrap interval; no predictor can be trusted below it.

Imports numpy, scikit-learn (GroupKFold) and this package.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from reefd.errors import ConfigError
from reefd.interference.baselines import Predicted, Predictor, all_predictors
from reefd.interference.dataset import Dataset
from reefd.interference.errors import InterferenceError
from reefd.interference.metrics import (
    NoiseFloor,
    false_safe,
    mape_pct,
    mean_kendall_tau,
    noise_floor,
    p90_abs_error,
    top1_regret,
)
from reefd.interference.train import MIN_TRAIN_PAIRS, TrainConfig

SPLITS = {"lomo": "leave-one-model-out", "pairs": "GroupKFold by model pair"}


@dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` does."""

    split: str = "lomo"
    """'lomo' (leave one model out) or 'pairs' (GroupKFold by model pair)."""
    slo_slowdown: float = 1.10
    """RT slowdown at or under which a pair counts as safe."""
    folds: int = 5
    """GroupKFold folds for the 'pairs' split (at most the model pairs)."""
    train: TrainConfig = field(default_factory=TrainConfig)

    def check(self) -> EvalConfig:
        if self.split not in SPLITS:
            raise ConfigError(f"--split {self.split!r}: choose {' or '.join(SPLITS)}")
        if not self.slo_slowdown >= 1.0:
            raise ConfigError(f"--slo-slowdown {self.slo_slowdown}: must be >= 1.0")
        if self.folds < 2:
            raise ConfigError(f"--folds {self.folds}: must be >= 2")
        self.train.check()
        return self


@dataclass(frozen=True)
class Fold:
    name: str
    """The held-out model's name (lomo) or 'fold k' (pairs)."""
    train: np.ndarray
    test: np.ndarray


def lomo_folds(data: Dataset) -> list[Fold]:
    """One fold per model: its pairs held out, the rest trained on."""
    data.require(pairs=MIN_TRAIN_PAIRS + 1, models=3, purpose="leave-one-model-out")
    out = []
    names = [data.model_names.get(m, m[:12]) for m in data.models]
    for model, name in zip(data.models, names, strict=True):
        if names.count(name) > 1:  # one name measured for two graphs
            name = f"{name} ({model[:8]})"
        held = np.array([model in (r.rt_model, r.be_model) for r in data.rows])
        if (~held).sum() < MIN_TRAIN_PAIRS:
            raise InterferenceError(
                f"holding out {name} leaves {(~held).sum()} training pairs in "
                f"{data.source or 'the store'}; leave-one-model-out needs at least "
                f"{MIN_TRAIN_PAIRS} in every fold: measure more pairs among the "
                "other models"
            )
        out.append(Fold(name, np.flatnonzero(~held), np.flatnonzero(held)))
    return out


def pair_folds(data: Dataset, folds: int) -> list[Fold]:
    """GroupKFold over unordered model pairs."""
    from sklearn.model_selection import GroupKFold

    data.require(
        pairs=MIN_TRAIN_PAIRS + 1, models=2, model_pairs=3, purpose="the pairs split"
    )
    groups = data.groups
    n_groups = len(set(groups))
    splitter = GroupKFold(n_splits=min(folds, n_groups))
    index = np.arange(len(data.rows))
    out = [
        Fold(f"fold {k + 1}", train, test)
        for k, (train, test) in enumerate(splitter.split(index, groups=groups))
    ]
    for fold in out:
        if len(fold.train) < MIN_TRAIN_PAIRS:
            raise InterferenceError(
                f"{fold.name} of {len(out)} trains on {len(fold.train)} pairs; the "
                f"pairs split needs at least {MIN_TRAIN_PAIRS}: measure more pairs"
            )
    return out


@dataclass(frozen=True)
class Scores:
    """One predictor's row of the table."""

    predictor: str
    mape_pct: float
    p90_abs_error: float
    kendall_tau: float
    tau_groups: int
    top1_regret: float
    regret_groups: int
    false_safe_pct: float
    predicted_safe: int
    scored: int
    """Held-out predictions scored (a lomo pair of two models counts twice)."""
    be_mape_pct: float


@dataclass(frozen=True)
class Held:
    """One held-out prediction."""

    predictor: str
    fold: str
    row: int
    rt_slowdown: float
    be_ratio: float | None


def score(
    name: str,
    held: Sequence[Held],
    data: Dataset,
    split: str,
    slo_slowdown: float,
) -> Scores:
    """The metrics (see the module docstring) of one predictor's predictions."""
    rows = [data.rows[h.row] for h in held]
    p = np.array([h.rt_slowdown for h in held])
    m = np.array([r.rt_slowdown for r in rows])
    groups: list[Hashable] = [
        (h.fold, r.rt_key) if split == "lomo" else r.rt_key
        for h, r in zip(held, rows, strict=True)
    ]
    tau, tau_groups = mean_kendall_tau(p, m, groups)
    regret, regret_groups = top1_regret(p, m, groups)
    rate, n_safe = false_safe(p, m, slo_slowdown)
    be = [h.be_ratio for h in held]
    be_mape = (
        float("nan")
        if any(v is None for v in be)
        else mape_pct(np.array(be), np.array([r.be_ratio for r in rows]))
    )
    return Scores(
        predictor=name,
        mape_pct=mape_pct(p, m),
        p90_abs_error=p90_abs_error(p, m),
        kendall_tau=tau,
        tau_groups=tau_groups,
        top1_regret=regret,
        regret_groups=regret_groups,
        false_safe_pct=100.0 * rate,
        predicted_safe=n_safe,
        scored=len(held),
        be_mape_pct=be_mape,
    )


def _num(value: float, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


@dataclass(frozen=True)
class Report:
    data: Dataset
    config: EvalConfig
    folds: tuple[Fold, ...]
    scores: tuple[Scores, ...]
    noise: NoiseFloor
    held: tuple[Held, ...]

    def summary(self) -> list[str]:
        c = self.config
        lines = [
            f"{SPLITS[c.split]} ({len(self.folds)} folds) on {self.data.describe()}",
            f"SLO slowdown threshold {c.slo_slowdown:.2f}; noise floor from "
            f"{self.noise.source}",
        ]
        if self.data.device.backend == "cpu":
            lines.append(
                "backend=cpu: CPU process co-runs, a stand-in for GPU co-location, "
                "not GPU figures"
            )
        return lines

    def markdown(self) -> str:
        head = ["predictor", "MAPE %", "p90 abs err", "Kendall tau", "top-1 regret"]
        head += ["false-safe %", "predicted safe", "BE MAPE %"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in self.scores:
            cells = [
                s.predictor,
                _num(s.mape_pct, 1),
                _num(s.p90_abs_error, 3),
                _num(s.kendall_tau, 2),
                _num(s.top1_regret, 3),
                _num(s.false_safe_pct, 1),
                f"{s.predicted_safe}/{s.scored}",
                _num(s.be_mape_pct, 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        n = self.noise
        noise = ["noise floor", _num(n.mape_pct, 1), _num(n.p90_abs_error, 3)]
        lines.append("| " + " | ".join([*noise, *["-"] * 5]) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "split": self.config.split,
            "slo_slowdown": self.config.slo_slowdown,
            "device": asdict(self.data.device),
            "dataset": self.data.describe(),
            "source": self.data.source,
            "folds": [f.name for f in self.folds],
            "scores": [
                {k: clean(v) for k, v in asdict(s).items()} for s in self.scores
            ],
            "noise_floor": {
                **{k: clean(v) for k, v in asdict(self.noise).items()},
                "source": self.noise.source,
            },
            "predictions": [
                {
                    "predictor": h.predictor,
                    "fold": h.fold,
                    "rt": self.data.names[self.data.rows[h.row].rt_key],
                    "be": self.data.names[self.data.rows[h.row].be_key],
                    "measured": self.data.rows[h.row].rt_slowdown,
                    "predicted": h.rt_slowdown,
                    "be_measured": self.data.rows[h.row].be_ratio,
                    "be_predicted": h.be_ratio,
                }
                for h in self.held
            ],
        }


def evaluate(
    data: Dataset,
    config: EvalConfig | None = None,
    predictors: Sequence[Predictor] | None = None,
) -> Report:
    """Every predictor on every fold of `config.split`, scored."""
    config = (config or EvalConfig()).check()
    predictors = predictors or all_predictors(config.train)
    folds = (
        lomo_folds(data) if config.split == "lomo" else pair_folds(data, config.folds)
    )
    held: dict[str, list[Held]] = {n: [] for p in predictors for n in p.names}
    for fold in folds:
        train, test = data.subset(fold.train), data.subset(fold.test)
        for predictor in predictors:
            out: dict[str, Predicted] = predictor.fit_predict(train, test)
            for name, predicted in out.items():
                for j, row in enumerate(fold.test):
                    be = predicted.be_ratio
                    held[name].append(
                        Held(
                            name,
                            fold.name,
                            int(row),
                            float(predicted.rt_slowdown[j]),
                            None if be is None else float(be[j]),
                        )
                    )
    scores = tuple(
        score(name, hs, data, config.split, config.slo_slowdown)
        for name, hs in held.items()
    )
    return Report(
        data=data,
        config=config,
        folds=tuple(folds),
        scores=scores,
        noise=noise_floor(data.rows),
        held=tuple(h for hs in held.values() for h in hs),
    )
