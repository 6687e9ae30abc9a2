"""An ensemble's members: read each finished run (its OOF, test predictions, folds, label map) and refuse
members that cannot be combined row by row (other labels, rows, order or folds), naming the file."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import load
from ..core.errors import ConfigError, DataError
from ..core.labels import LabelMap
from ..core.schema import Config
from ..core.tables import read_table

OWN_FILES = {"config.yaml": "train", "labels.json": "train", "cv.json": "train", "test_preds.csv": "predict"}
OOF_FILES = {"labels.json": "train", "cv.json": "train", "folds.csv": "train", "oof_preds.csv": "train"}


@dataclass
class Member:
    name: str
    oof_from: str            # the run whose oof_preds.csv and folds.csv stand for this member
    label_map: LabelMap
    metric: str
    oof: pd.DataFrame
    test: pd.DataFrame
    folds: pd.DataFrame
    folds_run: list[int]
    n_folds: int


def read_member(root: Path, name: str, id_col: str) -> Member:
    def need(exp: str, files: dict, note: str = "") -> None:
        for f, target in files.items():
            if not (root / exp / f).exists():
                raise ConfigError(f"ensemble member '{name}'{note}: {root / exp / f} does not exist; "
                                  f"run `make {target} EXP={exp}` first")

    need(name, OWN_FILES)
    cv = json.loads((root / name / "cv.json").read_text())
    src = cv.get("cv_source", "") if cv.get("kind") == "full_fit" else name
    if not src:
        raise ConfigError(f"ensemble member '{name}' is a full-fit run whose cv.json names no cv_source")
    need(src, OOF_FILES, "" if src == name else f" (a full-fit run; its OOF comes from '{src}')")
    cv = json.loads((root / src / "cv.json").read_text())
    label_map = LabelMap.load(root / name / "labels.json")
    if LabelMap.load(root / src / "labels.json") != label_map:
        raise DataError(f"ensemble member '{name}' and its cv_source '{src}' have different labels.json")
    cfg = load(name, [], base=root / name / "config.yaml")
    read = lambda p: read_table(p, dtype={id_col: str})  # noqa: E731
    return Member(name, src, label_map, cfg.metric, read(root / src / "oof_preds.csv"),
                  read(root / name / "test_preds.csv"),
                  read(root / src / "folds.csv"), [int(k) for k in cv["folds_run"]],
                  int(cv.get("n_folds", cfg.train.n_folds)))


def _row_diff(got: list, want: list) -> str:
    if len(got) != len(want):
        return f"{len(got)} rows instead of {len(want)}"
    n = len(set(got) ^ set(want)) // 2
    return f"{n} ids differ" if n else f"the same ids, {sum(a != b for a, b in zip(got, want))} in other places"


def check_members(ms: list[Member], cfg: Config, root: Path, train_ids: list, metric_given: bool) -> np.ndarray:
    """Refuse members that cannot be combined row by row; return the fold of every train row."""
    ref, id_col = ms[0], cfg.data.id_col
    cols = [id_col, *ref.label_map.pred_cols]
    fold_of = lambda m: m.folds.set_index(id_col)["fold"].reindex(train_ids).to_numpy(float) \
        if id_col in m.folds else np.full(len(train_ids), np.nan)  # noqa: E731
    fold = fold_of(ref)
    if np.isnan(fold).any():
        raise DataError(f"{root / ref.oof_from / 'folds.csv'} lacks a fold for some {cfg.data.train_file} rows")
    for m in ms:
        if m.label_map != ref.label_map:
            raise DataError(f"members '{ref.name}' and '{m.name}' have different labels.json ({ref.label_map.problem} "
                            f"{ref.label_map.pred_cols} vs {m.label_map.problem} {m.label_map.pred_cols}, "
                            f"or other target "
                            f"statistics): only runs of one problem on one train.csv can be ensembled")
        if m.metric != ref.metric and not metric_given:
            raise ConfigError(f"members use different metrics ('{ref.name}': {ref.metric}, '{m.name}': {m.metric}); "
                              f"pass metric=<name> to score the ensemble and every member with one metric")
        for df, want, file, like in (
                (m.oof, train_ids, root / m.oof_from / "oof_preds.csv", cfg.data.train_file),
                (m.test, ref.test.get(id_col, pd.Series()).tolist(), root / m.name / "test_preds.csv",
                 f"member '{ref.name}'s test_preds.csv")):
            if list(df.columns) != cols:
                raise DataError(f"member '{m.name}': {file} has columns {list(df.columns)}; expected {cols}")
            if df[id_col].tolist() != want:
                raise DataError(f"member '{m.name}': {file} does not hold the rows of {like} in its order "
                                f"({_row_diff(df[id_col].tolist(), want)})")
        n_diff = int((fold_of(m) != fold).sum())
        if n_diff or m.n_folds != ref.n_folds:
            raise DataError(f"members '{ref.name}' and '{m.name}' were trained on different folds ({n_diff} of "
                            f"{len(train_ids)} rows in another fold; n_folds {ref.n_folds} vs {m.n_folds}): one's "
                            f"OOF rows were the other's training rows. Retrain one on the other's folds file "
                            f"(same data.fold_seed, train.n_folds, paths.folds)")
    return fold.astype(int)
