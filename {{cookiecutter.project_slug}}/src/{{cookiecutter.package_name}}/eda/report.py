"""Building blocks of make eda's report, shared by the stage and its modality probes (image.py, text.py):
the per-file Profile a probe returns, markdown tables, and figures saved as PNG."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.atomic import write_with


@dataclass
class Profile:
    """What the modality's probe (image.py / text.py) measures of one file's rows."""
    df: pd.DataFrame                          # the rows profiled (a sample when over eda.max_rows)
    key: pd.Series                            # exact-duplicate key: md5 of the image bytes / normalised text
    stats: pd.DataFrame                       # numeric per-row features compared train vs test
    problems: pd.Series                       # "" or why the row could not be read
    extra: dict[str, Any] = field(default_factory=dict)   # probe-specific arrays (hashes, texts, pixels)


def table(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    """A markdown table without the optional `tabulate` dependency of DataFrame.to_markdown."""
    fmt = lambda v: floatfmt.format(v) if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, "|" + "---|" * len(df.columns), *rows])


def save_png(path: Path, fig) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def figure(n_panels: int, width: float = 4.0, height: float = 3.0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(n_panels, 4)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    return fig, list(axes.flat[:n_panels])
