"""Combining members' predictions with what make ensemble fitted: the one code path for an ensemble's
test predictions, in make ensemble and in a code-competition bundle (inference/offline.py).

P is members x rows x prediction columns, as read from the members' test_preds.csv (or oof_preds.csv).
The fitting (weights, Caruana counts, meta-models, cross-fitting) is the ensemble stage's (ensemble/blend.py);
what it fitted is saved in the ensemble's cv.json ("weights") and, for stack, meta_models.pkl.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..core.labels import CLASSIFICATION

EPS = 1e-7  # probability clip before log / logit


def weighted_mean(P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Convex combination of the members. Helps whenever members err independently; the safe default.
    Breaks nothing, but gains little when members are near copies of each other (see oof_corr.png)."""
    return np.tensordot(w, P, axes=1)


def geometric_mean(P: np.ndarray, w: np.ndarray, problem: str) -> np.ndarray:
    """Weighted geometric mean of probabilities, renormalised. Helps when one confident member should be
    able to veto a class (it averages logits, not probabilities). Breaks on regression (no probabilities)
    and is harsh on a member that is confidently wrong: a near-zero probability dominates the product."""
    g = np.exp(weighted_mean(np.log(np.clip(P, EPS, 1)), w))
    if problem in CLASSIFICATION:  # softmax outputs: renormalise each row
        return g / g.sum(1, keepdims=True)
    return g / (g + np.exp(weighted_mean(np.log(np.clip(1 - P, EPS, 1)), w)))  # per-column Bernoulli


def rank_mean(P: np.ndarray, problem: str) -> np.ndarray:
    """Per-column ranks scaled to [0, 1], averaged. Helps for roc_auc when members are scaled differently
    (a sharp and a timid model count alike). Breaks calibration: log loss and accuracy of the result mean
    little, and each row's rank is relative to the rows combined with it (OOF and test are ranked apart)."""
    from scipy.stats import rankdata
    out = ((rankdata(P, axis=1) - 1) / max(P.shape[1] - 1, 1)).mean(0)
    if problem == "multiclass":  # sklearn's multiclass AUC and log loss want rows that sum to 1
        out = out / np.maximum(out.sum(1, keepdims=True), EPS)
    return out


def stack_features(P: np.ndarray, problem: str) -> list[np.ndarray]:
    """One input matrix per meta-model: one model for binary / multiclass, one per target column otherwise.
    Probabilities enter as logits (log-probabilities for multiclass): a linear meta-model then adds the
    members' evidence the way their own heads did."""
    logit = lambda p: np.log(np.clip(p, EPS, 1 - EPS) / (1 - np.clip(p, EPS, 1 - EPS)))  # noqa: E731
    if problem == "binary":
        return [logit(P[:, :, 1]).T]
    if problem == "multiclass":
        return [np.log(np.clip(P, EPS, 1)).transpose(1, 0, 2).reshape(P.shape[1], -1)]
    return [(logit(P[:, :, j]) if problem == "multilabel" else P[:, :, j]).T for j in range(P.shape[2])]


def apply_stack(P, models: list, problem: str) -> np.ndarray:
    """Predictions of fitted meta-models, in the members' prediction columns."""
    outs = []
    for X, est in zip(stack_features(P, problem), models):
        if problem == "regression":
            outs.append(est.predict(X))
            continue
        proba = np.zeros((len(X), P.shape[2] if problem in CLASSIFICATION else 2))
        proba[:, np.asarray(est.classes_, dtype=int)] = est.predict_proba(X)  # a fold may lack a class
        outs.append(proba if problem in CLASSIFICATION else proba[:, 1])
    return outs[0] if problem in CLASSIFICATION else np.stack(outs, axis=1)


def combine_test(method: str, problem: str, T: np.ndarray, weights: np.ndarray | None = None,
                 fold_models: list | None = None) -> np.ndarray:
    """An ensemble's test predictions from its members' (T): mean / gmean with uniform weights, rank,
    weighted / hill with the fitted weights (cv.json "weights", in member order), stack with the mean of the
    fold meta-models (each was checked out-of-fold; the all-rows one never was)."""
    uniform = np.full(len(T), 1 / len(T))
    if method == "mean":
        return weighted_mean(T, uniform)
    if method == "gmean":
        return geometric_mean(T, uniform, problem)
    if method == "rank":
        return rank_mean(T, problem)
    if method == "stack":
        return np.mean([apply_stack(T, models, problem) for models in fold_models], axis=0)
    return weighted_mean(T, np.asarray(weights, dtype=np.float64))


def save_meta_models(path: Path, fold_models: list) -> None:
    """stack: the fold meta-models whose mean predicts test (pickled scikit-learn estimators: load them with
    the scikit-learn version that fitted them, MANIFEST.json of a bundle records it)."""
    path.write_bytes(pickle.dumps(fold_models))


def load_meta_models(path: Path) -> list:
    return pickle.loads(Path(path).read_bytes())
