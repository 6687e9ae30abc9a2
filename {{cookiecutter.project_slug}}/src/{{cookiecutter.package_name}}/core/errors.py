"""The three errors a stage turns into one line and exit code 2 (core.cli.run_stage), and the phrase that
points at rows of a CSV. A leaf: imports nothing of the package."""
from __future__ import annotations

import numpy as np


class ConfigError(ValueError):
    """A config key is unknown, mistyped or out of range; or a run folder / earlier stage is missing."""


class DataError(ValueError):
    """The competition files are not what the config says; the message says what to fix."""


class TrainingError(RuntimeError):
    """Training went wrong in a way the config can fix (a NaN loss); the message names fold, epoch, step."""


def rows_message(df, mask, id_col: str, limit: int = 5) -> str:
    """'line 7 (id=a3), line 9 (id=b1) and 4 more': CSV line numbers (header = line 1) of the masked rows."""
    rows = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(f"line {r + 2} (id={df[id_col].iloc[r]})" for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return shown + more
