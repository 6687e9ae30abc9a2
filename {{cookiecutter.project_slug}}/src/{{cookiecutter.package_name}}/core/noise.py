"""How much of a CV difference is noise: paired fold differences and a paired bootstrap over OOF rows.

Used by make leaderboard BASE=<exp> for experiments on the same folds as the base. Pure numpy on arrays;
delta is always experiment minus base in the metric's own units (for a loss, negative is better).

A paired bootstrap draws the same row indices for both experiments, so the rows' own difficulty cancels
and only the difference between the two predictions varies. Metrics that are functions of a confusion
matrix (accuracy, F1, MCC, macro F1, qwk) or of row means (RMSE, MAE, R2, log loss) are computed for all
resamples at once from per-resample counts; the others (ROC AUC, multilabel metrics) call the scorer once
per resample.
"""
from __future__ import annotations

import numpy as np

from .metrics import score

N_BOOT = 1000
SEED = 0
CHUNK = 100            # resamples per vectorised batch (memory: CHUNK x rows indices)
CONFUSION = ("accuracy", "f1", "mcc", "f1_macro", "qwk")


def fold_deltas(exp_scores: dict, base_scores: dict) -> tuple[list[float], float, float]:
    """(per-fold exp - base on their common folds, mean delta, standard error of the mean over folds)."""
    common = sorted(set(exp_scores) & set(base_scores))
    d = np.array([exp_scores[k] - base_scores[k] for k in common], dtype=np.float64)
    if not len(d):
        return [], float("nan"), float("nan")
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return d.tolist(), float(d.mean()), se


def _hard_codes(metric: str, problem: str, y, p):
    """(true, predicted) as 0..K-1 integer codes and K, for confusion-matrix metrics; None if not one."""
    if metric not in CONFUSION or problem == "multilabel":
        return None
    if problem in ("binary", "multiclass"):
        return y.astype(int), p.argmax(1), p.shape[1]
    lo, hi = np.floor(y.min()), np.ceil(y.max())  # regression qwk: rounded grades in the target's range
    t = np.rint(y[:, 0]).astype(int)
    q = np.clip(np.rint(p[:, 0]), lo, hi).astype(int)
    return t - int(lo), q - int(lo), int(hi - lo) + 1


def _from_confusion(metric: str, C: np.ndarray) -> np.ndarray:
    """Metric of each B x K x K confusion matrix (rows: truth, columns: prediction)."""
    n = C.sum((1, 2))
    tp = np.einsum("bkk->bk", C)
    rows, cols = C.sum(2), C.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return tp.sum(1) / n
        if metric == "f1":
            return np.nan_to_num(2 * tp[:, 1] / (rows[:, 1] + cols[:, 1]))
        if metric == "f1_macro":  # classes absent from truth and prediction do not count (as in sklearn)
            f = np.where(rows + cols > 0, 2 * tp / (rows + cols), np.nan)
            return np.nan_to_num(np.nanmean(f, 1))
        if metric == "mcc":
            c = tp.sum(1)
            num = c * n - (rows * cols).sum(1)
            den = np.sqrt((n ** 2 - (cols ** 2).sum(1)) * (n ** 2 - (rows ** 2).sum(1)))
            return np.where(den > 0, num / den, 0.0)
        k = C.shape[1]  # qwk
        w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2 / max(k - 1, 1) ** 2
        expected = rows[:, :, None] * cols[:, None, :] / n[:, None, None]
        return 1 - (C * w).sum((1, 2)) / (expected * w).sum((1, 2))


def _row_terms(metric: str, problem: str, y, p):
    """Per-row terms whose resample means give the metric (with `finish`), or None."""
    if metric == "log_loss" and problem in ("binary", "multiclass"):
        return -np.log(np.clip(p[np.arange(len(y)), y.astype(int)], 1e-15, 1))[:, None], lambda m: m[:, 0]
    if metric == "log_loss":
        q = np.clip(p, 1e-15, 1 - 1e-15)
        return (-(y * np.log(q) + (1 - y) * np.log(1 - q))).mean(1, keepdims=True), lambda m: m[:, 0]
    if metric == "rmse":
        return ((y - p) ** 2).mean(1, keepdims=True), lambda m: np.sqrt(m[:, 0])
    if metric == "mae":
        return np.abs(y - p).mean(1, keepdims=True), lambda m: m[:, 0]
    if metric == "r2":  # per column: 1 - SSE / SST, SST from the resample's own mean of y
        t = y.shape[1]
        return np.hstack([(y - p) ** 2, y, y ** 2]), \
            lambda m: np.mean(1 - m[:, :t] / np.maximum(m[:, 2 * t:] - m[:, t:2 * t] ** 2, 1e-300), 1)
    return None


def resample_scores(metric: str, problem: str, y, p, idx: np.ndarray) -> np.ndarray:
    """The metric on each row of idx (B x N row indices)."""
    codes = _hard_codes(metric, problem, y, p)
    if codes is not None:
        t, q, k = codes
        flat = (t * k + q)[idx] + (np.arange(len(idx)) * k * k)[:, None]
        C = np.bincount(flat.ravel(), minlength=len(idx) * k * k).reshape(len(idx), k, k).astype(np.float64)
        return _from_confusion(metric, C)
    terms = _row_terms(metric, problem, y, p)
    if terms is not None:
        values, finish = terms
        return finish(values[idx].mean(1))
    return np.array([score(metric, problem, y[i], p[i]) for i in idx])


def paired_bootstrap(metric: str, problem: str, y, p_exp, p_base, n_boot: int = N_BOOT, seed: int = SEED,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(delta on all rows, low, high): the percentile interval of exp - base over paired row resamples."""
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, n_boot, CHUNK):
        idx = rng.integers(0, len(y), size=(min(CHUNK, n_boot - start), len(y)))
        deltas.append(resample_scores(metric, problem, y, p_exp, idx)
                      - resample_scores(metric, problem, y, p_base, idx))
    d = np.concatenate(deltas)
    d = d[np.isfinite(d)]
    full = score(metric, problem, y, p_exp) - score(metric, problem, y, p_base)
    if not len(d):
        return full, float("nan"), float("nan")
    a = (1 - level) / 2
    return full, float(np.quantile(d, a)), float(np.quantile(d, 1 - a))
