"""Post-processing: predictions -> the hard decisions a metric scores, with parameters fitted on OOF rows.

    make predict EXP=exp001 ARGS="post.method=threshold"     # fits, writes post.json, cv.json cv_post
    make submit EXP=exp001 ARGS="post.method=threshold"      # the submission's labels are post-processed

Every method maps predictions to predictions in the same columns, so the metric, the CSVs and the
submission layout stay as they are: a binary cut-off t becomes a logit shift (P >= t <=> P' >= 0.5, argmax
unchanged otherwise), per-class offsets a softmax of shifted log-probabilities, a rounder the grades
themselves. Pure arrays here; reading the run and writing post.json is postrun.py's job.

Honest CV: cross_fit fits each fold's parameters on the other folds' OOF rows and applies them to that fold,
so cv_post is out of fold; cv_post_in_sample (fitted and scored on all OOF rows) is the optimistic figure a
fit on the scored rows gives. The test set uses the parameters fitted on all OOF rows.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import ConfigError
from ..core.metrics import METRICS, score

EPS = 1e-7
METHODS = ("none", "threshold", "class_thresholds", "rounder", "prior")
PROBLEM = {"threshold": "binary", "class_thresholds": "multilabel", "rounder": "regression", "prior": "multiclass"}
# metrics scored on hard decisions: only those can gain from moving a cut-off
HARD = {"binary": ("accuracy", "f1", "f1_macro", "mcc", "qwk"), "multiclass": ("accuracy", "f1_macro", "mcc", "qwk"),
        "multilabel": ("accuracy", "f1_macro"), "regression": ("qwk",)}
GRID = 41       # candidates per parameter and pass
PASSES = 2      # coordinate passes over the parameters


def check_post(method: str, problem: str, metric: str, submit_threshold: float = 0.5) -> None:
    """Refuse a method that cannot help this problem / metric, before any file is read."""
    if method == "none":
        return
    if method not in PROBLEM:
        raise ConfigError(f"config key 'post.method' is {method!r}; choose one of {', '.join(METHODS)}")
    if PROBLEM[method] != problem:
        fits = next(m for m, p in PROBLEM.items() if p == problem)
        raise ConfigError(f"config key 'post.method' {method} is for {PROBLEM[method]} problems, this one is "
                          f"{problem}: use post.method={fits} (or none)")
    if metric not in HARD[problem]:
        raise ConfigError(f"config key 'post.method' {method} tunes hard decisions, but metric {metric} scores "
                          f"{'values' if problem == 'regression' else 'probabilities'}: it cannot gain; use "
                          f"post.method=none, or a metric of {', '.join(HARD[problem])}")
    if method == "class_thresholds" and submit_threshold != 0.5:
        raise ConfigError(f"config key 'submit.threshold' is {submit_threshold} with post.method=class_thresholds, "
                          f"which fits the cut-offs itself: leave submit.threshold at 0.5")


def _logit(p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _candidates(values: np.ndarray) -> np.ndarray:
    """Cut-offs between observed values (quantiles), so each candidate changes some decisions."""
    return np.unique(np.quantile(values, np.linspace(0.005, 0.995, 4 * GRID)))


class Threshold:
    """binary: the probability cut-off of the second class that maximises the metric. Helps when the metric
    needs hard labels and is not symmetric in the classes (F1, MCC on imbalanced data): 0.5 is rarely its
    best cut-off. Overfits little (one parameter), but with few positive rows the best cut-off jumps."""

    @staticmethod
    def apply(P, params):
        z = _logit(P[:, 1]) - _logit(np.float64(params["threshold"]))
        p1 = _sigmoid(z)
        return np.stack([1 - p1, p1], axis=1)

    @staticmethod
    def fit(P, y, loss):
        cands = np.append(_candidates(P[:, 1]), 0.5)
        losses = [loss(y, Threshold.apply(P, {"threshold": t})) for t in cands]
        return {"threshold": float(cands[int(np.argmin(losses))])}


class ClassThresholds:
    """multilabel: one cut-off per column, by coordinate search (each column in turn, twice). Helps with
    rare labels under F1 / accuracy, whose best cut-off is far from 0.5. Overfits a column with few
    positive rows: its cut-off fits those rows' noise (compare cv_post with cv_post_in_sample)."""

    @staticmethod
    def apply(P, params):
        return _sigmoid(_logit(P) - _logit(np.asarray(params["thresholds"], dtype=np.float64)))

    @staticmethod
    def fit(P, y, loss):
        t = np.full(P.shape[1], 0.5)
        for _ in range(PASSES):
            for j in range(P.shape[1]):
                cands = np.append(_candidates(P[:, j]), t[j])
                losses = [loss(y, ClassThresholds.apply(P, {"thresholds": np.r_[t[:j], c, t[j + 1:]]})) for c in cands]
                t[j] = cands[int(np.argmin(losses))]
        return {"thresholds": t.tolist()}


class Prior:
    """multiclass: per-class offsets added to the log-probabilities (a prior shift), by coordinate search.
    Helps when the training class balance differs from what the metric rewards (macro F1, a shifted test
    prior): argmax moves toward the under-predicted classes. Overfits with many classes and few rows per
    class: each offset has the OOF noise of its class to fit."""

    @staticmethod
    def apply(P, params):
        z = np.log(np.clip(P, EPS, 1)) + np.asarray(params["offsets"], dtype=np.float64)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    @staticmethod
    def fit(P, y, loss):
        b = np.zeros(P.shape[1])
        steps = np.linspace(-2, 2, GRID)
        for _ in range(PASSES):
            for j in range(1, P.shape[1]):  # class 0 is the reference: offsets are relative
                cands = b[j] + steps
                losses = [loss(y, Prior.apply(P, {"offsets": np.r_[b[:j], c, b[j + 1:]]})) for c in cands]
                b[j] = cands[int(np.argmin(losses))]
        return {"offsets": b.tolist()}


class Rounder:
    """regression scored by qwk: cut points between consecutive grades (an optimised rounder), by coordinate
    search from the midpoints. Helps when the model shrinks toward the mean (typical under MSE): the outer
    grades need lower cut points than x.5. Overfits grades with few rows: their cut points fit noise."""

    @staticmethod
    def apply(P, params):
        out = P.astype(np.float64).copy()
        for j, (lo, cuts) in enumerate(zip(params["low"], params["cuts"])):
            out[:, j] = lo + np.searchsorted(np.sort(cuts), P[:, j], side="right")
        return out

    @staticmethod
    def fit(P, y, loss, grades: list[tuple[int, int]]):
        low, cuts = [g[0] for g in grades], [list(np.arange(lo, hi) + 0.5) for lo, hi in grades]
        params = {"low": low, "cuts": cuts}
        for j in range(P.shape[1]):
            col = lambda c: Rounder.apply(P[:, [j]], {"low": [low[j]], "cuts": [c]})  # noqa: E731
            c = np.asarray(cuts[j], dtype=np.float64)
            for _ in range(PASSES):
                for i in range(len(c)):
                    left = c[i - 1] if i else c[i] - 1
                    right = c[i + 1] if i + 1 < len(c) else c[i] + 1
                    cands = np.append(np.linspace(left, right, GRID)[1:-1], c[i])
                    losses = [loss(y[:, [j]], col(np.r_[c[:i], v, c[i + 1:]])) for v in cands]
                    c[i] = cands[int(np.argmin(losses))]
            cuts[j] = c.tolist()
        return params


CLASSES = {"threshold": Threshold, "class_thresholds": ClassThresholds, "prior": Prior, "rounder": Rounder}


def grades_of(low: list[float], high: list[float]) -> list[tuple[int, int]]:
    """The integer grades of each regression column: its training range, as qwk rounds them."""
    return [(int(np.ceil(lo)), int(np.floor(hi))) for lo, hi in zip(low, high)]


def fit(method: str, metric: str, problem: str, P, y, grades=None) -> dict:
    """Parameters of `method` fitted on these rows (JSON-ready)."""
    sign = -1.0 if METRICS[metric].greater_is_better else 1.0
    loss = lambda t, p: np.nan_to_num(sign * score(metric, problem, t, p), nan=1e9)  # noqa: E731
    if method == "rounder":
        return Rounder.fit(P, y, loss, grades)
    return CLASSES[method].fit(P, y, loss)


def apply(method: str, P: np.ndarray, params: dict) -> np.ndarray:
    return P if method == "none" else CLASSES[method].apply(np.asarray(P, dtype=np.float64), params)


def cross_fit(method: str, metric: str, problem: str, P, y, fold, covered, folds_run, grades=None):
    """(post-processed OOF, what post.json records): for each fold k, parameters fitted on the other folds'
    covered rows predict fold k; `params` (for test) are fitted on every covered row."""
    out = np.full(P.shape, np.nan)
    fold_params = {}
    for k in folds_run:
        rest, mine = covered & (fold != k), covered & (fold == k)
        fold_params[str(k)] = fit(method, metric, problem, P[rest], y[rest], grades)
        out[mine] = apply(method, P[mine], fold_params[str(k)])
    params = fit(method, metric, problem, P[covered], y[covered], grades)
    on = lambda rows, p: score(metric, problem, y[rows], p[rows])  # noqa: E731
    info = {"method": method, "metric": metric, "params": params, "fold_params": fold_params,
            "cv": on(covered, P), "cv_post": on(covered, out),
            "cv_post_in_sample": on(covered, apply(method, P, params)),
            "folds_post": [on(covered & (fold == k), out) for k in folds_run], "folds_run": list(folds_run)}
    return out, info
