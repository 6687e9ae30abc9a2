"""The report's plots as PNG bytes (matplotlib, headless). Each draws a fixed number of points or bins, so
a plot of 100k OOF rows costs what one of 1k does."""
from __future__ import annotations

import io

import numpy as np

MAX_POINTS = 400      # points kept of a ROC / PR curve
SCATTER_ROWS = 3000   # above this, a hexbin instead of a scatter


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    _plt().close(fig)
    return buf.getvalue()


def thin(*arrays: np.ndarray) -> list[np.ndarray]:
    """At most MAX_POINTS evenly spaced points of each (same-length) curve array, the ends kept."""
    n = len(arrays[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).astype(int))
    return [a[idx] for a in arrays]


def curves(hist, metric: str, best: dict) -> bytes:
    """Four panels (train loss, valid loss, metric, lr) with a line per fold (and seed); best epochs starred."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    groups = [c for c in ("fold", "seed") if c in hist.columns]
    for key, g in hist.groupby(groups, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = " ".join(f"{c} {v}" for c, v in zip(groups, key))
        for ax, col in zip(axes, ("train_loss", "valid_loss", "score", "lr")):
            if col in g:
                line, = ax.plot(g["epoch"], g[col], marker=".", label=label)
                b = best.get(key[0])
                if b is not None and col in ("valid_loss", "score"):
                    at = g[g["epoch"] == b]
                    ax.plot(at["epoch"], at[col], "*", ms=13, color=line.get_color())
    for ax, title in zip(axes, ("train loss", "valid loss", f"valid {metric}", "lr")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    return png(fig)


def confusion(cm: np.ndarray, labels: list[str]) -> bytes:
    plt = _plt()
    side = min(3 + 0.45 * len(labels), 14)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    rate = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig.colorbar(ax.imshow(rate, cmap="Blues", vmin=0, vmax=1), ax=ax, label="share of the true class")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 15:
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="w" if rate[i, j] > 0.5 else "k")
    return png(fig)


def roc_pr(items: list[tuple[str, tuple, tuple]]) -> bytes:
    """items: (name, (fpr, tpr, auc), (recall, precision, ap)) per column."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (fpr, tpr, auc), (rec, prec, ap) in items:
        a.plot(*thin(fpr, tpr), label=f"{name} AUC {auc:.4f}")
        b.plot(*thin(rec, prec), label=f"{name} AP {ap:.4f}")
    a.plot([0, 1], [0, 1], "k:", lw=1)
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    b.set(xlabel="recall", ylabel="precision", title="precision-recall")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return png(fig)


def reliability(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> bytes:
    """items: (name, mean predicted probability per bin, observed rate per bin, rows per bin)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for name, pred, true, _ in items:
        ax.plot(pred, true, "o-", label=name)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="reliability diagram")
    ax.legend(fontsize=7)
    return png(fig)


def regression(name: str, y: np.ndarray, p: np.ndarray) -> bytes:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    for ax, (xs, ys, xl, yl) in zip((a, b), ((y, p, "true", "predicted"), (y, p - y, "true", "residual (pred - true)"))):
        if len(y) > SCATTER_ROWS:
            ax.hexbin(xs, ys, gridsize=50, bins="log", cmap="viridis", mincnt=1)
        else:
            ax.scatter(xs, ys, s=6, alpha=0.5)
        ax.set(xlabel=f"{xl} {name}", ylabel=yl)
    a.plot([lo, hi], [lo, hi], "r:", lw=1)
    b.axhline(0, color="r", ls=":", lw=1)
    a.set_title("predicted vs true")
    b.set_title("residuals vs target")
    return png(fig)
