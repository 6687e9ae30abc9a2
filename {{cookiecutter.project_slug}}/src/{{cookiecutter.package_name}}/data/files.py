"""Read and check the competition files (Kaggle layout under data.dir): train.csv, test.csv, the sample.

Every reader checks what pandas would otherwise misread silently (duplicate header names, rows with more
fields than the header, empty or repeated ids) and names the file, column and line to fix. The full
pre-flight that runs before any training (labels, folds, submission layout, inputs) is preflight.py.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..core.errors import DataError, rows_message
from ..core.labels import CLASSIFICATION
from ..core.schema import Config
from ..core.tables import read_table


def data_path(cfg: Config, name: str) -> Path:
    return Path(cfg.data.dir) / name


def feature_cols(cfg: Config) -> list[str]:
    return [cfg.data.image_col] if cfg.task == "image" else list(cfg.data.text_cols)


def require_features(cfg: Config, df: pd.DataFrame, path: Path) -> None:
    require_columns(df, feature_cols(cfg), path, "data.image_col" if cfg.task == "image" else "data.text_cols")


def read_csv(cfg: Config, name: str, dtype: dict | None = None) -> pd.DataFrame:
    path = data_path(cfg, name)
    if not path.is_file():
        raise DataError(f"{path} not found; set data.dir to the folder holding the competition files")
    dtype = {cfg.data.id_col: str, **(dtype or {})}
    try:
        df = read_table(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV: {e}") from None
    check_header(df, path)
    require_columns(df, [cfg.data.id_col], path, "data.id_col")
    check_unique_ids(df, cfg.data.id_col, path)
    return df


def check_header(df: pd.DataFrame, path: Path) -> None:
    """Extra columns pandas would read silently wrong: a name given twice comes back as 'name.1', and rows
    with one field more than the header make the first column the index, shifting every name by one."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise DataError(f"{path} names column(s) {twice} more than once in its header; rename or drop the copies")
        if isinstance(df.index, pd.RangeIndex):
            return
        long = [rows.line_num for row in rows if len(row) > len(header)]
    shown = ", ".join(f"line {n}" for n in long[:5]) + (f" and {len(long) - 5} more" if len(long) > 5 else "")
    raise DataError(f"{path}: {shown} hold more fields than the header {header} names (a trailing comma?); "
                    f"remove the extra fields or name the extra column in the header")


def require_columns(df: pd.DataFrame, cols: list[str], path: Path, key: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path} has no column {missing} (config key {key}); its columns are {list(df.columns)}")


def check_unique_ids(df: pd.DataFrame, id_col: str, path: Path) -> None:
    empty = df[id_col].isna() | (df[id_col].astype(str).str.strip() == "")
    if empty.any():
        raise DataError(f"{path} column '{id_col}' has an empty id at {rows_message(df, empty, id_col)}")
    dup = df[id_col].duplicated(keep=False)
    if dup.any():
        raise DataError(f"{path} has duplicate ids in column '{id_col}' at {rows_message(df, dup, id_col)}; "
                        f"ids must be unique")


def label_dtype(cfg: Config) -> dict:
    """Classification labels stay text ('01' is not 1, and a NaN must not turn 1 into '1.0')."""
    return {c: str for c in cfg.data.target_cols} if cfg.problem in CLASSIFICATION else {}


def load_train(cfg: Config) -> pd.DataFrame:
    dtype = label_dtype(cfg)
    if cfg.data.group_col:
        dtype[cfg.data.group_col] = str
    df = read_csv(cfg, cfg.data.train_file, dtype)
    path = data_path(cfg, cfg.data.train_file)
    require_columns(df, list(cfg.data.target_cols), path, "data.target_cols")
    require_features(cfg, df, path)
    if cfg.data.group_col:
        require_columns(df, [cfg.data.group_col], path, "data.group_col")
        if df[cfg.data.group_col].isna().any():
            raise DataError(f"{path} column '{cfg.data.group_col}' (data.group_col) has empty groups at "
                            f"{rows_message(df, df[cfg.data.group_col].isna(), cfg.data.id_col)}")
    return df


def load_test(cfg: Config) -> pd.DataFrame:
    df = read_csv(cfg, cfg.data.test_file, label_dtype(cfg))
    path = data_path(cfg, cfg.data.test_file)
    if df.empty:  # known before training: there would be nothing to predict or submit
        raise DataError(f"{path} has a header but no rows; the submission needs its ids")
    require_features(cfg, df, path)
    return df


def load_sample_submission(cfg: Config) -> pd.DataFrame:
    return read_csv(cfg, cfg.data.sample_submission_file, dtype=None)


def check_sample_ids(cfg: Config, test: pd.DataFrame, sample: pd.DataFrame) -> None:
    path = data_path(cfg, cfg.data.sample_submission_file)
    id_col = cfg.data.id_col
    extra = sorted(set(sample[id_col]) - set(test[id_col]))
    missing = sorted(set(test[id_col]) - set(sample[id_col]))
    if extra or missing:
        raise DataError(f"{path} and {cfg.data.test_file} hold different ids: {len(extra)} only in the sample "
                        f"(e.g. {extra[:3]}), {len(missing)} only in test (e.g. {missing[:3]})")


def competition_files(cfg: Config) -> list[Path]:
    """The three CSVs whose sha256 a run records (run.json) and a resumed run checks."""
    return [data_path(cfg, f) for f in (cfg.data.train_file, cfg.data.test_file, cfg.data.sample_submission_file)]
