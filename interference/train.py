"""Training the interference model and its file.

Owns fitting three scikit-learn regressors on a Dataset's pair features
(features.py; task features are quantised before pairing, so the fitted model
is a function of bins and model.py's table reproduces it exactly):

- `rt_log`: gradient-boosted trees, squared error, on log RT slowdown;
- `rt_upper_log`: the same with quantile loss at `conservative_quantile`
  (0.9): the conservative variant the safety decision uses; its slowdown is
  never below `rt_log`'s;
- `be_ratio`: gradient-boosted trees on the BE throughput ratio.

Each is a Pipeline of a median imputer (features a device did not measure,
e.g. GPM readings on the cpu backend, are NaN) and the regressor.

File format (`ModelFile.save` / `load`): one joblib file (pickle with zlib
compression) holding a dict: `format` ('reefd-interference-model'),
`version` (FORMAT_VERSION), creation time, reefd and scikit-learn versions,
the device, what it was trained on, the feature names and configs, the three
fitted pipelines, and the raw features and names of every task it was
trained on (so a loaded model has a table without a store). Loading refuses a
file of another format, version or feature list. It is a pickle: load only
files you wrote (the default lives in the daemon's own state directory).

Imports the standard library, numpy, scikit-learn, joblib, reefd.config,
reefd.errors and this package's dataset, features and errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reefd.errors import ConfigError
from reefd.interference.dataset import Dataset
from reefd.interference.errors import InterferenceError
from reefd.interference.features import (
    PAIR_FEATURES,
    TASK_FEATURES,
    DeviceFacts,
    FeatureConfig,
    Features,
    pair_matrix,
    quantise,
)

FORMAT = "reefd-interference-model"
FORMAT_VERSION = 1
"""Bumped when the file's layout or the meaning of a stored field changes."""
MODEL_NAME = "interference.joblib"
MIN_TRAIN_PAIRS = 4
MIN_TRAIN_MODELS = 2


def default_model_path() -> Path:
    """`interference.joblib` in the daemon's state directory (reefd.config)."""
    from reefd.config import DaemonConfig

    return DaemonConfig().resolved_state_dir() / MODEL_NAME


@dataclass(frozen=True)
class TrainConfig:
    """How the regressors are fitted."""

    n_estimators: int = 200
    """Boosting stages per regressor."""
    max_depth: int = 3
    """Depth of each tree (3: interactions of up to three features)."""
    learning_rate: float = 0.05
    """Shrinkage of each stage's contribution."""
    min_samples_leaf: int = 2
    """Fewest pairs in a leaf (small: stores hold tens to hundreds of pairs)."""
    conservative_quantile: float = 0.9
    """Quantile of the log RT slowdown the conservative regressor predicts."""
    seed: int = 0
    """random_state of every regressor (training is deterministic)."""

    def check(self) -> TrainConfig:
        if not 0.5 <= self.conservative_quantile < 1.0:
            raise ConfigError(
                f"conservative_quantile {self.conservative_quantile}: want 0.5..1"
            )
        if min(self.n_estimators, self.max_depth, self.min_samples_leaf) < 1:
            raise ConfigError(
                f"n_estimators {self.n_estimators}, max_depth {self.max_depth}, "
                f"min_samples_leaf {self.min_samples_leaf}: each must be >= 1"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate {self.learning_rate}: must be > 0")
        return self


@dataclass(frozen=True)
class Estimate:
    """Predictions for a batch of pairs, one entry per pair."""

    rt_slowdown: np.ndarray
    rt_upper: np.ndarray
    """Conservative RT slowdown (>= rt_slowdown)."""
    be_ratio: np.ndarray


def _pipeline(config: TrainConfig, loss: str, alpha: float = 0.9) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        GradientBoostingRegressor(
            loss=loss,
            alpha=alpha,
            n_estimators=config.n_estimators,
            max_depth=config.max_depth,
            learning_rate=config.learning_rate,
            min_samples_leaf=config.min_samples_leaf,
            random_state=config.seed,
        ),
    )


@dataclass(frozen=True)
class Trained:
    """The three fitted regressors and how their inputs are made."""

    rt_log: Any
    rt_upper_log: Any
    be_ratio: Any
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def matrix(self, pairs: Sequence[tuple[Features, Features]]) -> np.ndarray:
        """The model's input: pair features of the quantised task features."""
        binned = [
            (quantise(rt, self.features)[1], quantise(be, self.features)[1])
            for rt, be in pairs
        ]
        return pair_matrix(binned)

    def estimate_matrix(self, x: np.ndarray) -> Estimate:
        rt = np.exp(self.rt_log.predict(x))
        upper = np.maximum(np.exp(self.rt_upper_log.predict(x)), rt)
        be = np.clip(self.be_ratio.predict(x), 1e-3, None)
        return Estimate(rt, upper, be)

    def estimate(self, pairs: Sequence[tuple[Features, Features]]) -> Estimate:
        """Predictions for (RT task features, BE task features) pairs."""
        return self.estimate_matrix(self.matrix(pairs))


def fit(data: Dataset, config: TrainConfig | None = None) -> Trained:
    """Fit the three regressors on every row of `data`."""
    config = (config or TrainConfig()).check()
    data.require(pairs=MIN_TRAIN_PAIRS, models=MIN_TRAIN_MODELS, purpose="training")
    trained = Trained(
        _pipeline(config, "squared_error"),
        _pipeline(config, "quantile", config.conservative_quantile),
        _pipeline(config, "squared_error"),
        data.config,
    )
    x = trained.matrix(data.pairs())
    log_rt = np.log(data.rt_slowdown())
    trained.rt_log.fit(x, log_rt)
    trained.rt_upper_log.fit(x, log_rt)
    trained.be_ratio.fit(x, data.be_ratio())
    return trained


@dataclass(frozen=True)
class ModelFile:
    """A trained model with what it was trained on: the model file's content."""

    trained: Trained
    device: DeviceFacts
    tasks: Mapping[str, Features]
    """Graph key -> raw task features of every task it was trained on."""
    names: Mapping[str, str]
    trained_on: Mapping[str, Any]
    """pairs, models, measurements, source, description."""
    train_config: TrainConfig = field(default_factory=TrainConfig)
    created_at: str = ""

    @classmethod
    def train(cls, data: Dataset, config: TrainConfig | None = None) -> ModelFile:
        from reefd.profiler.records import utc_now

        config = (config or TrainConfig()).check()
        return cls(
            trained=fit(data, config),
            device=data.device,
            tasks=dict(data.tasks),
            names=dict(data.names),
            trained_on={
                "pairs": len(data.rows),
                "models": len(data.models),
                "measurements": sum(len(r.repeats) for r in data.rows),
                "source": data.source,
                "description": data.describe(),
            },
            train_config=config,
            created_at=utc_now(),
        )

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (a temporary file, then a rename)."""
        import joblib
        import sklearn

        import reefd

        path = Path(path)
        content = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": self.created_at,
            "reefd_version": reefd.__version__,
            "sklearn_version": sklearn.__version__,
            "device": asdict(self.device),
            "trained_on": dict(self.trained_on),
            "feature_names": list(PAIR_FEATURES),
            "task_feature_names": list(TASK_FEATURES),
            "feature_config": asdict(self.trained.features),
            "train_config": asdict(self.train_config),
            "estimators": {
                "rt_log": self.trained.rt_log,
                "rt_upper_log": self.trained.rt_upper_log,
                "be_ratio": self.trained.be_ratio,
            },
            "tasks": {k: dict(v) for k, v in self.tasks.items()},
            "names": dict(self.names),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            joblib.dump(content, tmp, compress=3)
            os.replace(tmp, path)
        except OSError as exc:
            raise InterferenceError(
                f"cannot write the model to {path}: {exc}"
            ) from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelFile:
        """Read a file `save` wrote; InterferenceError if it is not one this
        version of reefd can use."""
        import joblib

        path = Path(path)
        if not path.exists():
            raise InterferenceError(
                f"no interference model at {path} (train one with "
                "`reef-profile train`, or pass its path)"
            )
        try:
            content = joblib.load(path)
        except Exception as exc:  # a foreign or truncated file: say which
            raise InterferenceError(
                f"{path} is not a readable interference model: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        _check(path, content)
        est = content["estimators"]
        return cls(
            trained=Trained(
                est["rt_log"],
                est["rt_upper_log"],
                est["be_ratio"],
                FeatureConfig(**content["feature_config"]),
            ),
            device=DeviceFacts(**content["device"]),
            tasks=content["tasks"],
            names=content["names"],
            trained_on=content["trained_on"],
            train_config=TrainConfig(**content["train_config"]),
            created_at=content["created_at"],
        )


def _check(path: Path, content: object) -> None:
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise InterferenceError(f"{path} is not a reefd interference model file")
    if content.get("version") != FORMAT_VERSION:
        raise InterferenceError(
            f"{path} is model file format v{content.get('version')}; this reefd "
            f"reads v{FORMAT_VERSION}: retrain with `reef-profile train`"
        )
    if content.get("feature_names") != list(PAIR_FEATURES) or content.get(
        "task_feature_names"
    ) != list(TASK_FEATURES):
        raise InterferenceError(
            f"{path} was trained on another feature list than this reefd "
            "computes: retrain with `reef-profile train`"
        )
