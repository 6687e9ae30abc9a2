"""Post-processing of a finished run: fitted on its OOF (post.json, cv.json cv_post), applied to its test set.

    make predict EXP=exp001 ARGS="post.method=threshold"     # fit: post.json, cv.json cv_post
    make submit EXP=exp001 ARGS="post.method=threshold"      # fit if post.json is missing or stale, then apply

The methods and the cross-fitting are postprocess.py's. A full-fit run is fitted on the OOF of its k-fold
source (cv.json cv_source), like an ensemble member. post.json records the OOF file's sha256: a rewritten
OOF (tta.oof, a re-run) makes it stale, and it is fitted again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_csv, write_json
from ..core.errors import ConfigError, DataError
from ..core.labels import LabelMap
from ..core.rundir import RunPaths, get_logger, preds_frame, read_cv
from ..core.schema import Config
from ..core.tables import read_table
from ..data.files import load_train
from .postprocess import apply, check_post, cross_fit, grades_of


def check(cfg: Config) -> None:
    check_post(cfg.post.method, cfg.problem, cfg.metric, cfg.submit.threshold)


def oof_source(cfg: Config, paths: RunPaths) -> RunPaths:
    """The run whose OOF and folds stand for this one: itself, or a full fit's k-fold source."""
    cv = read_cv(paths)
    if cv.get("kind") != "full_fit":
        return paths
    if not cv.get("cv_source"):
        raise ConfigError(f"{paths.cv} is a full-fit run that names no cv_source: post-processing needs OOF rows")
    return RunPaths(cfg, cv["cv_source"])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_post(cfg: Config, paths: RunPaths, label_map: LabelMap, log=None) -> dict:
    """Fit cfg.post.method on the run's OOF, cross-fitted; writes post.json and cv_post into cv.json."""
    check(cfg)
    src = oof_source(cfg, paths)
    id_col = cfg.data.id_col
    oof_file, folds_file = src.require(src.oof, "train"), src.require(src.folds, "train")
    train = load_train(cfg)
    oof = read_table(oof_file, dtype={id_col: str}).set_index(id_col)
    fold_of = read_table(folds_file, dtype={id_col: str}).set_index(id_col)["fold"]
    ids = train[id_col]
    if set(oof.index) != set(ids) or set(fold_of.index) != set(ids):
        raise DataError(f"{oof_file} / {folds_file} and {cfg.data.dir}/{cfg.data.train_file} hold different ids; "
                        f"post-processing needs the rows {src.exp} was trained on (set data.dir)")
    P = oof.loc[ids, label_map.pred_cols].to_numpy(np.float64)
    fold = fold_of.loc[ids].to_numpy()
    y = label_map.encode(train, id_col, cfg.data.train_file)
    folds_run = [int(k) for k in read_cv(src)["folds_run"]]
    covered = np.isin(fold, folds_run) & ~np.isnan(P).any(1)
    grades = grades_of(label_map.low, label_map.high) if cfg.post.method == "rounder" else None
    if grades is not None and any(hi <= lo for lo, hi in grades):
        raise DataError(f"post.method=rounder needs at least two integer grades in each target's training range, "
                        f"got {grades}")
    _, info = cross_fit(cfg.post.method, cfg.metric, cfg.problem, P, y, fold, covered, folds_run, grades)
    info.update(oof_from=src.exp, oof_sha256=_sha(oof_file), rows=int(covered.sum()))
    write_json(paths.post, info)
    cv = read_cv(paths)
    cv.update(cv_post=info["cv_post"], cv_post_in_sample=info["cv_post_in_sample"], post_method=cfg.post.method,
              folds_post=info["folds_post"])
    write_json(paths.cv, cv)
    (log or get_logger(paths.log)).info(
        f"post.method={cfg.post.method}: {cfg.metric} cv {info['cv']:.5f} -> cv_post {info['cv_post']:.5f} "
        f"(out of fold; fitted in-sample {info['cv_post_in_sample']:.5f}) -> {paths.post}")
    return info


def current_post(cfg: Config, paths: RunPaths, label_map: LabelMap) -> dict:
    """post.json when it holds this method and metric fitted on today's OOF, else a new fit."""
    if paths.post.is_file():
        info = json.loads(paths.post.read_text())
        src = oof_source(cfg, paths)
        if (info.get("method"), info.get("metric")) == (cfg.post.method, cfg.metric) and src.oof.is_file() \
                and info.get("oof_sha256") == _sha(src.oof):
            return info
    return fit_post(cfg, paths, label_map)


def post_test(cfg: Config, paths: RunPaths, label_map: LabelMap) -> Path:
    """test_preds.csv with the post-processing fitted on all OOF rows -> test_post.csv (its path)."""
    info = current_post(cfg, paths, label_map)
    return apply_file(cfg.post.method, info["params"], paths.require(paths.test_preds, "predict"), paths.test_post,
                      cfg.data.id_col, label_map, f"re-run make predict EXP={paths.exp}")


def apply_file(method: str, params: dict, preds_file: Path, out: Path, id_col: str, label_map: LabelMap,
               fix: str) -> Path:
    """preds_file post-processed with params -> out; make submit and a bundle (make package) share it, so
    their submissions are the same bytes."""
    preds = read_table(preds_file, dtype={id_col: str})
    cols = [c for c in preds.columns if c != id_col]
    if cols != label_map.pred_cols:
        raise DataError(f"{preds_file} holds columns {cols[:10]}, labels.json predicts {label_map.pred_cols[:10]}; "
                        f"{fix}")
    values = apply(method, preds[label_map.pred_cols].to_numpy(np.float64), params)
    write_csv(out, preds_frame(pd.Series(preds[id_col]), id_col, values, label_map))
    return out
