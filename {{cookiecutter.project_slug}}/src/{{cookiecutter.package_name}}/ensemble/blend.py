"""Blending: the ways make ensemble combines its members' predictions, and their honest cross-fitting.

P (and T for test) is members x rows x prediction columns, as read from oof_preds.csv / test_preds.csv.
mean, gmean and rank combine every row the same way; weighted (SLSQP), hill (Caruana) and stack (a
scikit-learn meta-model) are fitted, so cross_fit fits them on the other folds' OOF rows for each fold.
Applying what was fitted (the methods themselves) is inference/combine.py, shared with code-competition
bundles; reading and checking members is members.py's job, writing the run the stage's (__init__.py);
nothing here touches a file.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..core.errors import ConfigError
from ..core.labels import CLASSIFICATION, LabelMap
from ..core.metrics import METRICS, score
from ..core.schema import Config
from ..inference.combine import EPS, apply_stack, combine_test, stack_features, weighted_mean


def fit_slsqp(P, y, loss) -> np.ndarray:
    """Weights >= 0 summing to 1 that minimise loss on these rows, from uniform. Helps with smooth metrics
    (log loss, RMSE) and few members. Breaks on step-like metrics (accuracy, F1): the gradient is zero
    almost everywhere, so it stays at uniform (use hill); with many members it overfits the OOF rows."""
    from scipy.optimize import minimize
    uniform = np.full(len(P), 1 / len(P))
    # eps: a finite-difference step large enough to move a few ranks / argmaxes of step-like metrics;
    # weights are renormalised inside, as SLSQP's probes step off the simplex (probabilities must sum to 1)
    res = minimize(lambda w: loss(y, weighted_mean(P, w / max(w.sum(), EPS))), uniform, method="SLSQP",
                   bounds=[(0, 1)] * len(P),
                   constraints={"type": "eq", "fun": lambda w: w.sum() - 1}, options={"maxiter": 200, "eps": 1e-3})
    w = np.clip(np.nan_to_num(res.x), 0, None)
    w = w / w.sum() if w.sum() > 0 else uniform
    # an optimum no better than uniform is noise (or a failed solve): uniform is the honest fallback
    return w if loss(y, weighted_mean(P, w)) < loss(y, weighted_mean(P, uniform)) else uniform


def fit_hill(P, y, loss, iters: int) -> np.ndarray:
    """Caruana's greedy selection with replacement; weights are the counts. Helps with any metric, step-like
    ones included, and with many members (it drops the useless ones). Breaks toward the single best member
    when few rows decide it: the first pick is that member, and small gains on OOF noise add more of it."""
    counts = np.zeros(len(P))
    first = int(np.argmin([loss(y, p) for p in P]))
    counts[first], current = 1, P[first]
    best = loss(y, current)
    for _ in range(iters):
        n = counts.sum()
        tries = [loss(y, (current * n + p) / (n + 1)) for p in P]
        m = int(np.argmin(tries))
        if not tries[m] < best:  # nothing improves: further steps would fit noise
            break
        counts[m] += 1
        current, best = (current * n + P[m]) / (n + 1), tries[m]
    return counts / counts.sum()


# ---- stacking ------------------------------------------------------------------------------------
def meta_estimator(cfg: Config):
    """(import path, unfitted estimator) from ensemble.meta_model / meta_params, checked for the method the
    problem needs. Called at startup too, so a bad import path fails before any member is read."""
    params, path = dict(cfg.ensemble.meta_params), cfg.ensemble.meta_model
    if not path:
        path = "sklearn.linear_model." + ("Ridge" if cfg.problem == "regression" else "LogisticRegression")
        params = params if cfg.problem == "regression" else {"max_iter": 1000, **params}
    module, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"config key 'ensemble.meta_model' is {path!r}, which cannot be imported ({e}); give an "
                          f"import path such as sklearn.linear_model.Ridge") from None
    try:
        est = cls(**params)
    except TypeError as e:
        raise ConfigError(f"config key 'ensemble.meta_params' {params} does not suit {path}: {e}") from None
    need = "predict" if cfg.problem == "regression" else "predict_proba"
    if not hasattr(est, need):
        raise ConfigError(f"config key 'ensemble.meta_model' {path} has no {need}(); {cfg.problem} stacking needs it")
    return path, est


def stack_targets(y: np.ndarray, problem: str) -> list[np.ndarray]:
    """The targets matching stack_features: the class index, or one column per meta-model."""
    if problem in CLASSIFICATION:
        return [y]
    return [y[:, j] if problem == "regression" else y[:, j].astype(int) for j in range(y.shape[1])]


def fit_stack(P, y, problem: str, est) -> list:
    """Meta-models fitted on these rows. Helps when members differ in where they are right (it can learn
    interactions a convex weight cannot, and negative weights). Breaks with many members and few rows:
    it fits the OOF noise, which only the per-fold fit in cross_fit reveals (cv vs cv_in_sample)."""
    from sklearn.base import clone
    return [clone(est).fit(X, t) for X, t in zip(stack_features(P, problem), stack_targets(y, problem))]


def coefficients(models: list, names: list[str], label_map: LabelMap) -> dict:
    """The all-rows meta-models' coef_ (for estimators that have one), by target column."""
    lm = label_map
    groups = [(lm.target_cols[0], lm.pred_cols[1:] if lm.problem == "binary" else lm.pred_cols)] \
        if label_map.problem in CLASSIFICATION else [(c, [c]) for c in label_map.pred_cols]
    return {col: {"features": [f"{m}[{c}]" for m in names for c in feats], "coef": np.asarray(est.coef_).tolist(),
                  "intercept": np.asarray(getattr(est, "intercept_", 0.0)).tolist()}
            for (col, feats), est in zip(groups, models) if hasattr(est, "coef_")}


# ---- honest cross-fitting ------------------------------------------------------------------------
def cross_fit(cfg: Config, label_map: LabelMap, P, T, y, fold, covered, folds_run: list[int]):
    """(OOF, test predictions, what cv.json records about the fit, stack: the fold meta-models) for
    ensemble.method. Fitted methods are fitted per fold on the other folds' rows, so the OOF stays out-of-fold
    and its CV is comparable to a member's; fitting on all rows and scoring them (cv_in_sample) is optimistic.
    Test goes through inference.combine.combine_test, as it does in a code-competition bundle."""
    method, problem, names = cfg.ensemble.method, cfg.problem, cfg.ensemble.members
    uniform = np.full(len(P), 1 / len(P))
    oof = np.full(P.shape[1:], np.nan)
    if method in ("mean", "gmean", "rank"):  # nothing fitted: every row is combined the same way
        oof[covered] = combine_test(method, problem, P[:, covered])
        return oof, combine_test(method, problem, T), {"weights": dict(zip(names, uniform.tolist()))}, None
    sign = -1.0 if METRICS[cfg.metric].greater_is_better else 1.0
    # a NaN score (e.g. AUC on rows of one class) must never look best
    loss = lambda t, p: np.nan_to_num(sign * score(cfg.metric, problem, t, p), nan=1e9)  # noqa: E731
    if method == "stack":
        meta_path, est = meta_estimator(cfg)
        fit, apply = (lambda Q, t: fit_stack(Q, t, problem, est)), (lambda Q, ms: apply_stack(Q, ms, problem))
    else:
        fit = (lambda Q, t: fit_slsqp(Q, t, loss)) if method == "weighted" else \
            (lambda Q, t: fit_hill(Q, t, loss, cfg.ensemble.hill_iters))
        apply = weighted_mean
    per_fold = {}
    for k in folds_run:  # fold k's rows are predicted by what the other folds' rows fitted, never their own
        per_fold[k] = fit(P[:, covered & (fold != k)], y[covered & (fold != k)])
        oof[covered & (fold == k)] = apply(P[:, covered & (fold == k)], per_fold[k])
    final = fit(P[:, covered], y[covered])
    info = {"cv_in_sample": score(cfg.metric, problem, y[covered], apply(P[:, covered], final))}
    if method == "stack":
        info.update(meta_model=meta_path, meta_params=cfg.ensemble.meta_params,
                    coefficients=coefficients(final, names, label_map))
        fold_models = [per_fold[k] for k in folds_run]
        return oof, combine_test(method, problem, T, fold_models=fold_models), info, fold_models
    info.update(weights=dict(zip(names, final.tolist())),
                fold_weights={str(k): dict(zip(names, w.tolist())) for k, w in per_fold.items()})
    return oof, combine_test(method, problem, T, final), info, None
