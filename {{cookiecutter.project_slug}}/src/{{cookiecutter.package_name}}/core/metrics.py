"""Competition metrics from scikit-learn, chosen by the `metric` config key.

Which metric applies to which problem, its direction and the default per problem live in metric_table.py.
Each metric takes y (class indices (N,), or (N, T) values / 0-1 labels) and preds (the CSV columns:
probabilities (N, C) or values (N, T)) and knows whether higher is better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn import metrics as skm

from .errors import ConfigError
from .metric_table import CLS, METRIC_TABLE


def _hard(y, p, problem, threshold=0.5):
    return (p.argmax(1), y) if problem in CLS else ((p >= threshold).astype(int), y.astype(int))


def _roc_auc(y, p, problem):
    if problem == "binary":
        return skm.roc_auc_score(y, p[:, 1])
    if problem == "multiclass":
        return skm.roc_auc_score(y, p, multi_class="ovr", labels=list(range(p.shape[1])))
    return skm.roc_auc_score(y.astype(int), p, average="macro")


def _log_loss(y, p, problem):
    if problem in CLS:
        return skm.log_loss(y, np.clip(p, 1e-15, 1), labels=list(range(p.shape[1])))
    return float(np.mean([skm.log_loss(y[:, j], np.clip(p[:, j], 1e-15, 1 - 1e-15), labels=[0, 1])
                          for j in range(y.shape[1])]))


def _qwk(y, p, problem):
    if problem in CLS:
        return skm.cohen_kappa_score(y, p.argmax(1), weights="quadratic")
    lo, hi = np.floor(y.min()), np.ceil(y.max())
    return skm.cohen_kappa_score(np.rint(y[:, 0]).astype(int),
                                 np.clip(np.rint(p[:, 0]), lo, hi).astype(int), weights="quadratic")


def _f1_macro(y, p, problem):
    pred, true = _hard(y, p, problem)
    return skm.f1_score(true, pred, average="macro", zero_division=0)


def _accuracy(y, p, problem):
    pred, true = _hard(y, p, problem)
    return skm.accuracy_score(true, pred)


@dataclass(frozen=True)
class Metric:
    fn: Callable[[np.ndarray, np.ndarray, str], float]
    greater_is_better: bool
    problems: tuple[str, ...]


SCORERS: dict[str, Callable[[np.ndarray, np.ndarray, str], float]] = {
    "accuracy": _accuracy,
    "f1_macro": _f1_macro,
    "f1": lambda y, p, pr: skm.f1_score(y, p.argmax(1)),
    "mcc": lambda y, p, pr: skm.matthews_corrcoef(y, p.argmax(1)),
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "qwk": _qwk,
    "rmse": lambda y, p, pr: skm.root_mean_squared_error(y, p),
    "mae": lambda y, p, pr: skm.mean_absolute_error(y, p),
    "r2": lambda y, p, pr: skm.r2_score(y, p),
}
METRICS: dict[str, Metric] = {name: Metric(SCORERS[name], greater, problems)
                              for name, (problems, greater) in METRIC_TABLE.items()}


def check_metric(name: str, problem: str) -> None:
    if name not in METRICS:
        raise ConfigError(f"config key 'metric' is {name!r}; choose one of {', '.join(METRICS)}")
    if problem not in METRICS[name].problems:
        ok = [m for m, v in METRICS.items() if problem in v.problems]
        raise ConfigError(f"config key 'metric' {name!r} does not apply to {problem}; choose one of {', '.join(ok)}")


def score(name: str, problem: str, y: np.ndarray, preds: np.ndarray) -> float:
    try:
        return float(METRICS[name].fn(y, preds, problem))
    except ValueError:  # e.g. AUC on a fold with one class: report NaN rather than crash the run
        return float("nan")


def is_better(name: str, new: float, old: float | None) -> bool:
    if np.isnan(new):
        return False
    if old is None or np.isnan(old):
        return True
    return new > old if METRICS[name].greater_is_better else new < old
