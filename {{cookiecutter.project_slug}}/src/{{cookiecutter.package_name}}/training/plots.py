"""Loss curves as PNG files: per fold against epochs (make train, loss_fold<k>.png) and per optimiser step
(make sanity, loss.png). One function draws both; matplotlib runs headless (Agg)."""
from __future__ import annotations

from pathlib import Path

from ..core.atomic import write_with


def save_curves(path: Path, x, curves: list[tuple], *, xlabel: str, ylabel: str, title: str,
                twin: tuple | None = None, log_y: bool = False, figsize=(6, 4), dpi: int = 100,
                title_size: float | None = None) -> None:
    """curves: (y, fmt, label) per line, fmt / label None for matplotlib's own; twin: (y, fmt, colour,
    label) of one more line on a second y axis (the validation metric), also named on that axis.
    A legend is drawn when any curve has a label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for y, fmt, label in curves:
        ax.plot(x, y, *([fmt] if fmt else []), **({"label": label} if label else {}))
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if twin is not None:
        y, fmt, colour, label = twin
        ax2 = ax.twinx()
        ax2.plot(x, y, fmt, color=colour, label=label)
        ax2.set_ylabel(label)
    if any(label for _, _, label in curves):
        ax.legend(loc="upper left")
    ax.set_title(title, **({"fontsize": title_size} if title_size else {}))
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    plt.close(fig)


def save_fold_plot(path: Path, hist, fold: int | str, metric: str) -> None:
    """hist: the fold's history rows (epoch, train_loss, valid_loss, score); fold: its number or its name
    ("fold 2 seed 7")."""
    curves = [(hist["train_loss"], "o-", "train loss"), (hist["valid_loss"], "o-", "valid loss")]
    name = fold if isinstance(fold, str) else f"fold {fold}"
    save_curves(path, hist["epoch"], curves,
                xlabel="epoch", ylabel="loss", title=f"{name}: train vs valid loss",
                twin=(hist["score"], "s--", "gray", metric))


def save_step_plot(path: Path, losses: list[float], title: str) -> None:
    save_curves(path, range(1, len(losses) + 1), [(losses, None, None)], xlabel="optimiser step",
                ylabel="training loss", title=title, log_y=True, figsize=(5, 3.5), dpi=90, title_size=9)
