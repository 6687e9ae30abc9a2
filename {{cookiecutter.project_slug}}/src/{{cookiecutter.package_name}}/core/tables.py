"""Reading the project's CSVs: values are data, not pandas' guesses.

pandas reads "NA", "N/A", "None", "null", "nan" and a dozen other strings as missing by default, so an id
"NA", a label "None" or a text "null" would silently become NaN (and a missing id or an empty target).
Every CSV of the project is read here with those guesses off: only an empty field is missing; what else
counts as empty (whitespace) is decided by the checks that read the values.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_table(path: str | Path, **kwargs) -> pd.DataFrame:
    """pd.read_csv with pandas' NA strings switched off: only an empty field reads as missing."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs)
