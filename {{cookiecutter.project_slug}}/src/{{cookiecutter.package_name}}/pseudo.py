"""Pseudo-labelling round: a trained experiment labels the test (or unlabelled) rows, a new k-fold run
learns from them.

    make pseudo EXP=BASE [NAME=NEW] ARGS="pseudo.weight=0.5 train.epochs=4"
    python -m <package> pseudo --exp BASE [--name NEW] [pseudo.threshold=0.95 pseudo.soft=true ...]

The new experiment (default name BASE_pseudo) starts from BASE's saved config (+ ARGS), uses BASE's
folds, and adds pseudo rows to the TRAINING part of each fold only; its oof_preds.csv and cv.json are
on the original train rows and folds, so its CV compares directly with BASE's. It ends by predicting
test (test_preds.csv), so `make submit EXP=NEW` follows, and `make pseudo EXP=NEW` chains a second round.

No leak: fold k's pseudo-labels come from BASE's fold-k model only (fold<k>/test_preds.csv, written by
`make predict EXP=BASE`), which never saw fold k's validation rows. The all-fold average (per_fold=false)
was trained on every fold's validation rows: fold k would learn its own validation labels through the
test rows, and the CV would be inflated; it is allowed only with a warning.

Targets: binary / multiclass hard labels (argmax) on rows whose top probability >= pseudo.threshold, or
with pseudo.soft=true every row's probabilities as a soft target; multilabel: 0/1 where every column
is at least threshold-confident, or probabilities; regression: the predicted values (threshold unused).
pseudo.source names a CSV of unlabelled rows in data.dir (id + input columns) instead of test.csv;
a label column it may carry must hold the base's labels only.
Each fold's rows and targets are written to outputs/NEW/fold<k>/pseudo_labels.csv.
Helps when the test set is large compared with train and the base model is good; hurts when its
errors are systematic (the round confirms them) and when the pseudo rows swamp the real ones (lower
pseudo.weight or raise the threshold).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .core.atomic import write_csv
from .core.cli import run_stage
from .core.config import load, parse_overrides
from .core.errors import ConfigError, DataError
from .core.labels import CLASSIFICATION, LabelMap
from .core.rundir import RunPaths, get_logger, open_run, read_cv, run_kind
from .core.schema import Config
from .data.files import data_path, label_dtype, load_test, load_train, read_csv, require_features
from .inference.predictor import fold_predictions, predict_test
from .modality import get_modality
from .training.fit import PseudoRows
from .training.kfold import train_kfold
from .training.setup import make_accelerator
from .core.tables import read_table
from .core.lock import hold


def pseudo_targets(cfg: Config, label_map: LabelMap, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base predictions (N, C) -> (rows kept (bool N), encoded targets of the kept rows)."""
    p, thr = np.asarray(probs, dtype=np.float64), cfg.pseudo.threshold
    if label_map.problem == "regression":
        return np.ones(len(p), bool), ((p - np.array(label_map.mean)) / np.array(label_map.std)).astype(np.float32)
    if cfg.pseudo.soft:
        return np.ones(len(p), bool), p.astype(np.float32)
    if label_map.problem in CLASSIFICATION:
        keep = p.max(1) >= thr
        return keep, p[keep].argmax(1).astype(np.int64)
    keep = np.maximum(p, 1 - p).min(1) >= thr  # multilabel: every column confident
    return keep, (p[keep] >= 0.5).astype(np.float32)


def readable(ids: pd.Series, id_col: str, label_map: LabelMap, y: np.ndarray, weight: float) -> pd.DataFrame:
    """What fold k trains on, in the target's own terms: labels, probabilities or values."""
    df = pd.DataFrame({id_col: ids.to_numpy()})
    if label_map.problem in CLASSIFICATION and y.ndim == 1:
        df[label_map.target_cols[0]] = [label_map.classes[i] for i in y]
    elif label_map.problem == "regression":
        for j, c in enumerate(label_map.target_cols):
            df[c] = y[:, j] * label_map.std[j] + label_map.mean[j]
    else:
        for j, c in enumerate(label_map.pred_cols):
            df[c] = y[:, j]
    df["weight"] = weight
    return df


def load_source(cfg: Config, train: pd.DataFrame, label_map: LabelMap) -> tuple[pd.DataFrame, str]:
    """The rows to label: test.csv, or pseudo.source (checked like test.csv, and disjoint from train). A label
    column either carries must hold training labels only: the pseudo-labels come from that map."""
    if not cfg.pseudo.source:
        df, name = load_test(cfg), cfg.data.test_file
    else:
        path, id_col = data_path(cfg, cfg.pseudo.source), cfg.data.id_col
        if not path.exists():
            raise DataError(f"config key 'pseudo.source': {path} does not exist (the path is relative to data.dir)")
        df, name = read_csv(cfg, cfg.pseudo.source, label_dtype(cfg)), str(path)
        require_features(cfg, df, path)
        shared = sorted(set(df[id_col]) & set(train[id_col]))
        if shared:
            raise DataError(f"{path} holds {len(shared)} train ids (e.g. {shared[:3]}); a train row labelled by the "
                            f"model would leak into other folds' training: drop them from the source")
    label_map.check_known_labels(df, cfg.data.id_col, name)
    return df, name


def base_predictions(base_cfg: Config, base_paths: RunPaths, label_map: LabelMap, source: pd.DataFrame,
                     folds: list[int], from_test: bool, per_fold: bool) -> dict[int, np.ndarray]:
    """Fold k -> the base predictions that label fold k's pseudo rows (source order)."""
    id_col = base_cfg.data.id_col
    if from_test:
        def read(path, make: str) -> np.ndarray:
            df = read_table(base_paths.require(path, make), dtype={id_col: str}).set_index(id_col)
            if list(df.columns) != label_map.pred_cols:
                raise DataError(f"{path} holds columns {list(df.columns)[:10]}, {base_paths.labels} predicts "
                                f"{label_map.pred_cols[:10]}; re-run make predict EXP={base_paths.exp}")
            if set(df.index) != set(source[id_col]):
                raise DataError(f"{path} does not hold test.csv's ids; re-run make predict EXP={base_paths.exp}")
            return df.loc[source[id_col], label_map.pred_cols].to_numpy()
        if not per_fold:
            mean = read(base_paths.test_preds, "predict")
            return {k: mean for k in folds}
        return {k: read(base_paths.fold_test_preds(k), "predict") for k in folds}
    accelerator = make_accelerator(base_cfg)
    preds = dict(fold_predictions(base_cfg, base_paths, label_map, source, folds, accelerator, "pseudo source"))
    if not per_fold:
        mean = np.mean([preds[k] for k in folds], axis=0)
        return {k: mean for k in folds}
    return preds


def run(base: str | None, overrides: list[str], name: str | None = None) -> dict:
    base_cfg, base_paths, label_map = open_run(base, [], "pseudo")
    base_cv = read_cv(base_paths)
    kind = run_kind(base_paths, base_cv)
    if kind in ("full_fit", "ensemble"):
        kind = "a full-fit run" if kind == "full_fit" else "an ensemble"
        raise ConfigError(f"{base_paths.dir} is {kind}: it has no per-fold models whose predictions leave fold k's "
                          f"validation rows unseen; pseudo-label from a k-fold experiment instead")
    name = name or f"{base}_pseudo"
    if name == base:
        raise ConfigError(f"--name {name} is the base experiment itself; choose a new name")
    cli = parse_overrides(overrides)
    cfg = load(name, [*overrides, f"pseudo.base={base}"], base=base_paths.config)
    cfg.overwrite = bool(cli.get("overwrite", False))  # the base's own overwrite flag does not carry over
    p = cfg.pseudo
    mixing = cfg.task == "image" and (cfg.aug.mixup_alpha or cfg.aug.cutmix_alpha)
    if p.soft and mixing and label_map.problem in CLASSIFICATION:
        raise ConfigError("config key 'pseudo.soft' with Mixup / CutMix: timm's Mixup needs class indices; "
                          "set pseudo.soft=false or aug.mixup_alpha=aug.cutmix_alpha=0")
    log = get_logger()
    train = load_train(cfg)
    source, source_name = load_source(cfg, train, label_map)
    if cfg.data.check_inputs:
        get_modality(cfg, base_paths.backbone).check_inputs(source, source_name)
    id_col = cfg.data.id_col
    folds = train[[id_col]].merge(read_table(base_paths.require(base_paths.folds, "train"), dtype={id_col: str}),
                                  on=id_col, how="left")
    if folds["fold"].isna().any():
        raise DataError(f"{base_paths.folds} lacks {int(folds['fold'].isna().sum())} ids of {cfg.data.train_file}; "
                        f"the base was trained on other data")
    folds["fold"] = folds["fold"].astype(int)
    fold_list = list(base_cv["folds_run"])
    if cfg.train.folds and sorted(cfg.train.folds) != sorted(fold_list):
        raise ConfigError(f"config key 'train.folds' {cfg.train.folds}: base {base} has models for folds "
                          f"{fold_list} only")
    cfg.train.folds = fold_list
    if not p.per_fold:
        log.warning("pseudo.per_fold=false: every fold learns from the all-fold average, which saw its validation "
                    "rows; the CV of this run is inflated and not comparable with the base's")
    preds = base_predictions(base_cfg, base_paths, label_map, source, fold_list, not p.source, p.per_fold)
    extra, frames = {}, {}
    for k in fold_list:
        keep, y = pseudo_targets(cfg, label_map, preds[k])
        if not keep.any():
            raise DataError(f"fold {k}: no row of {source_name} reaches pseudo.threshold={p.threshold} (highest "
                            f"confidence {preds[k].max():.3f}); lower the threshold or use pseudo.soft=true")
        rows = source.loc[keep].reset_index(drop=True)
        extra[k] = PseudoRows(rows, y, p.weight)
        frames[k] = readable(rows[id_col], id_col, label_map, y, p.weight)
        log.info(f"fold {k}: {int(keep.sum())}/{len(source)} pseudo rows from {base}'s "
                 f"{'fold ' + str(k) if p.per_fold else 'all-fold'} predictions, weight {p.weight}")

    def write_labels(paths: RunPaths) -> None:
        for k, df in frames.items():
            write_csv(paths.pseudo_labels(k), df)

    with hold(RunPaths(cfg).dir, "pseudo"):
        result = train_kfold(cfg, folds_df=folds, extra=extra, before_training=write_labels, kind="pseudo")
        predict_test(name, [o for o in overrides if not o.startswith("overwrite=")])
    log.info(f"pseudo round: {base} CV {base_cv['cv']:.5f} -> {name} CV {result['cv']:.5f} ({cfg.metric}, same folds)")
    return result


def main(argv=None):
    run_stage(run, argv, options=("--name",))


if __name__ == "__main__":
    main()
