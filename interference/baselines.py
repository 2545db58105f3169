"""The predictors evaluate.py compares: the learned model and the baselines.

Owns the `Predictor` interface (fit on training pairs, predict held-out
pairs: RT slowdown and, where the predictor has one, BE throughput ratio) and
each predictor:

- learned / conservative: train.py's regressors (point and quantile);
- no interference: every slowdown 1.0, every BE ratio 1.0;
- mean slowdown: the training pairs' mean;
- linear (gpulet): least squares on both sides' normalised compute and
  memory demand (gpulet's linear interference model, with achieved rates
  standing in for its utilisation counters);
- complementarity (Usher): slowdown 1 + k * (c_rt * c_be + m_rt * m_be), the
  overlap of normalised compute (c) and memory (m) demand, k fitted by least
  squares through the origin: compute beside memory is cheap, like with like
  is not;
- class rule (Orion): each task is compute-bound when its arithmetic intensity
  is at or above the ridge point, else memory-bound; a pair of the same class
  is predicted at the training mean of same-class pairs, a mixed pair at the
  mean of mixed pairs;
- oracle: the measured values (zero error by construction: a check of the
  metrics, and the ceiling).

Demand is normalised by the largest achieved rate (GFLOP/s, GB/s) among the
training pairs' tasks: the store keeps no device peaks. Every fit sees only
the training pairs; a held-out model's solo features are known.

Imports numpy, scikit-learn (linear model) and this package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from reefd.interference.dataset import Dataset
from reefd.interference.train import TrainConfig, fit


@dataclass(frozen=True)
class Predicted:
    """One predictor's output for the held-out pairs, in row order."""

    rt_slowdown: np.ndarray
    be_ratio: np.ndarray | None = None
    """None: the predictor says nothing about the BE side."""


class Predictor(ABC):
    names: tuple[str, ...]
    """The outputs it produces, as the table names them."""

    @abstractmethod
    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        """Fit on `train`'s rows; predict `test`'s rows."""


class Learned(Predictor):
    names = ("learned", "conservative")

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        est = fit(train, self.config).estimate(test.pairs())
        return {
            "learned": Predicted(est.rt_slowdown, est.be_ratio),
            "conservative": Predicted(est.rt_upper, None),
        }


class NoInterference(Predictor):
    names = ("no interference",)

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        ones = np.ones(len(test.rows))
        return {self.names[0]: Predicted(ones, ones.copy())}


class MeanSlowdown(Predictor):
    names = ("mean slowdown",)

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        n = len(test.rows)
        rt = np.full(n, train.rt_slowdown().mean())
        be = np.full(n, train.be_ratio().mean())
        return {self.names[0]: Predicted(rt, be)}


def demand(train: Dataset, data: Dataset) -> np.ndarray:
    """Per row of `data`: (c_rt, m_rt, c_be, m_be), each side's achieved
    compute rate and bandwidth over the largest among `train`'s tasks."""
    keys = {r.rt_key for r in train.rows} | {r.be_key for r in train.rows}

    def peak(name: str) -> float:
        known = [v for k in keys if (v := train.tasks[k][name]) == v]
        top = max(known, default=0.0)
        return float(top) if top > 0 else 1.0

    c_peak, m_peak = peak("gflop_per_s"), peak("gb_per_s")
    rows = []
    for r in data.rows:
        rt, be = data.tasks[r.rt_key], data.tasks[r.be_key]
        rows.append(
            [
                rt["gflop_per_s"] / c_peak,
                rt["gb_per_s"] / m_peak,
                be["gflop_per_s"] / c_peak,
                be["gb_per_s"] / m_peak,
            ]
        )
    return np.nan_to_num(np.array(rows, dtype=np.float64).reshape(len(rows), 4))


class GpuletLinear(Predictor):
    names = ("linear (gpulet)",)

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        from sklearn.linear_model import LinearRegression

        x_train, x_test = demand(train, train), demand(train, test)
        out = []
        for y in (train.rt_slowdown(), train.be_ratio()):
            out.append(LinearRegression().fit(x_train, y).predict(x_test))
        return {self.names[0]: Predicted(out[0], out[1])}


def overlap(d: np.ndarray) -> np.ndarray:
    """c_rt * c_be + m_rt * m_be per row of `demand`'s output."""
    return d[:, 0] * d[:, 2] + d[:, 1] * d[:, 3]


def through_origin(x: np.ndarray, y: np.ndarray) -> float:
    """The k of least squares y = k x (0 where x is all zero)."""
    den = float(np.dot(x, x))
    return float(np.dot(x, y)) / den if den > 0 else 0.0


class UsherComplementarity(Predictor):
    names = ("complementarity (Usher)",)

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        o_train, o_test = overlap(demand(train, train)), overlap(demand(train, test))
        k_rt = max(0.0, through_origin(o_train, train.rt_slowdown() - 1.0))
        k_be = through_origin(o_train, train.be_ratio() - 1.0)
        return {self.names[0]: Predicted(1.0 + k_rt * o_test, 1.0 + k_be * o_test)}


class OrionClasses(Predictor):
    names = ("class rule (Orion)",)

    @staticmethod
    def same_class(data: Dataset) -> np.ndarray:
        ridge = data.config.ridge_flops_per_byte

        def compute_bound(key: str) -> bool:
            return bool(data.tasks[key]["intensity_flops_per_byte"] >= ridge)

        return np.array(
            [compute_bound(r.rt_key) == compute_bound(r.be_key) for r in data.rows]
        )

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        s_train, s_test = self.same_class(train), self.same_class(test)
        out = []
        for y in (train.rt_slowdown(), train.be_ratio()):
            means = {
                flag: (
                    y[s_train == flag].mean() if (s_train == flag).any() else y.mean()
                )
                for flag in (False, True)
            }
            out.append(np.array([means[bool(s)] for s in s_test], dtype=np.float64))
        return {self.names[0]: Predicted(out[0], out[1])}


class Oracle(Predictor):
    names = ("oracle (measured)",)

    def fit_predict(self, train: Dataset, test: Dataset) -> dict[str, Predicted]:
        return {self.names[0]: Predicted(test.rt_slowdown(), test.be_ratio())}


def all_predictors(config: TrainConfig | None = None) -> list[Predictor]:
    """Every predictor, in the order the table lists them."""
    return [
        Learned(config),
        NoInterference(),
        MeanSlowdown(),
        GpuletLinear(),
        UsherComplementarity(),
        OrionClasses(),
        Oracle(),
    ]
