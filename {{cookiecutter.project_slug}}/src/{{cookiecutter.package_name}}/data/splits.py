"""K-fold assignment, written once per data set and shared by every experiment on it.

    make folds EXP=exp001           # python -m <package> folds; make train runs this itself if needed

Strategy: grouped when data.group_col is set (StratifiedGroupKFold for classification, GroupKFold
otherwise); multilabel-stratified for multilabel; stratified on quantile bins of the first target
for regression; stratified for classification. Rows are sorted by id before splitting, so the same
ids get the same folds whatever the row order of train.csv. The seed is data.fold_seed, not `seed`,
so seed-averaged experiments still share folds.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from ..core.atomic import write_csv
from ..core.errors import DataError
from ..core.labels import CLASSIFICATION, LabelMap
from ..core.schema import Config
from ..core.tables import read_table


def folds_file(cfg: Config) -> Path:
    """One file per data set and split recipe: the stratification target and groups are in the name."""
    name = Path(cfg.data.dir).resolve().name or "data"
    recipe = f"{cfg.data.train_file}|{cfg.problem}|{','.join(cfg.data.target_cols)}|{cfg.data.group_col}"
    tag = hashlib.sha1(recipe.encode()).hexdigest()[:6]
    stem = Path(cfg.data.train_file).stem  # a nested or absolute train_file must not leak into the path
    return Path(cfg.paths.folds) / f"{name}_{stem}_k{cfg.train.n_folds}_s{cfg.data.fold_seed}_{tag}.csv"


def check_fold_counts(cfg: Config, train: pd.DataFrame, label_map: LabelMap) -> None:
    """Every class (classification) needs at least train.n_folds members to appear in every fold."""
    k = cfg.train.n_folds
    if label_map.problem in CLASSIFICATION:
        y = label_map.encode(train, cfg.data.id_col, cfg.data.train_file)
        counts = np.bincount(y, minlength=label_map.n_outputs)
        small = [(label_map.classes[i], int(c)) for i, c in enumerate(counts) if c < k]
        if small:
            raise DataError(f"{cfg.data.train_file} column '{label_map.target_cols[0]}': class(es) {small} have fewer "
                            f"members than train.n_folds={k}; lower train.n_folds or merge rare classes")
    if len(train) < k:
        raise DataError(f"{cfg.data.train_file} has {len(train)} rows, fewer than train.n_folds={k}")


def make_folds(cfg: Config, train: pd.DataFrame, label_map: LabelMap) -> pd.DataFrame:
    id_col, k, seed = cfg.data.id_col, cfg.train.n_folds, cfg.data.fold_seed
    check_fold_counts(cfg, train, label_map)
    order = np.argsort(train[id_col].to_numpy(), kind="stable")
    df = train.iloc[order].reset_index(drop=True)
    y = label_map.encode(df, id_col, cfg.data.train_file)
    x = np.zeros(len(df))
    groups = df[cfg.data.group_col].to_numpy() if cfg.data.group_col else None
    if groups is not None and len(set(groups)) < k:
        raise DataError(f"data.group_col '{cfg.data.group_col}' has {len(set(groups))} groups, fewer than "
                        f"train.n_folds={k}")
    if groups is not None:
        if label_map.problem in CLASSIFICATION:
            splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x, y, groups)
        else:
            splits = GroupKFold(k, shuffle=True, random_state=seed).split(x, y, groups)
    elif label_map.problem in CLASSIFICATION:
        splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y)
    elif label_map.problem == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
        splits = MultilabelStratifiedKFold(k, shuffle=True, random_state=seed).split(x, y)
    else:
        n_bins = int(min(10, max(2, len(df) // (k * 2))))
        bins = pd.qcut(y[:, 0], q=n_bins, labels=False, duplicates="drop")
        if np.bincount(bins).min() < k:
            splits = KFold(k, shuffle=True, random_state=seed).split(x)
        else:
            splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(x, bins)
    fold = np.full(len(df), -1, dtype=int)
    for i, (_, val) in enumerate(splits):
        fold[val] = i
    out = pd.DataFrame({id_col: df[id_col], "fold": fold})
    order = {v: i for i, v in enumerate(train[id_col])}
    return out.iloc[np.argsort(out[id_col].map(order).to_numpy())].reset_index(drop=True)


def check_fold_classes(cfg: Config, train: pd.DataFrame, folds: pd.DataFrame, label_map: LabelMap) -> None:
    """roc_auc is undefined on rows of one class (binary, multiclass) or on a multilabel column of one value:
    refused for train.csv as a whole and for every fold's validation rows, before any fold trains (group folds
    and rare multilabel columns can leave a fold without a class that stratification keeps elsewhere)."""
    if cfg.metric != "roc_auc":
        return
    y = label_map.encode(train, cfg.data.id_col, cfg.data.train_file)
    y = y[:, None] if y.ndim == 1 else y
    fold = folds["fold"].to_numpy()
    names = label_map.target_cols if label_map.problem == "multilabel" else [label_map.target_cols[0]]
    for rows, where in [(np.ones(len(y), bool), cfg.data.train_file)] + \
            [(fold == k, f"fold {k}'s validation rows") for k in (cfg.train.folds or range(cfg.train.n_folds))]:
        for j, col in enumerate(names):
            values = np.unique(y[rows, j])
            if len(values) < 2:
                shown = label_map.classes[int(values[0])] if label_map.problem in CLASSIFICATION and len(values) \
                    else (values.tolist() or "no rows")
                raise DataError(f"metric roc_auc is undefined for {where}: column '{col}' holds only {shown}; "
                                f"choose another metric, or other folds (data.group_col, train.n_folds)"
                                + (", or drop the column" if label_map.problem == "multilabel" else ""))


def load_or_make_folds(cfg: Config, train: pd.DataFrame, label_map: LabelMap) -> pd.DataFrame:
    """The folds for this data set in train.csv row order; made and saved on first use (after the checks)."""
    path = folds_file(cfg)
    id_col = cfg.data.id_col
    if path.exists():
        folds = read_table(path, dtype={id_col: str})
        if set(folds[id_col]) != set(train[id_col]) or len(folds) != len(train):
            raise DataError(f"{path} was made for a different {cfg.data.train_file} (ids differ); "
                            f"delete it to make new folds, or point paths.folds elsewhere")
        if sorted(folds["fold"].unique()) != list(range(cfg.train.n_folds)):
            raise DataError(f"{path} does not hold folds 0..{cfg.train.n_folds - 1}; delete it to remake")
        folds = train[[id_col]].merge(folds, on=id_col, how="left")
        check_fold_classes(cfg, train, folds, label_map)
        return folds
    folds = make_folds(cfg, train, label_map)
    check_fold_classes(cfg, train, train[[id_col]].merge(folds, on=id_col, how="left"), label_map)
    write_csv(path, folds)
    return folds
