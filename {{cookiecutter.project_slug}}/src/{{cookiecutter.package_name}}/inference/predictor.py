"""Predictions of a run's models: test rows (make predict, and the end of a full fit or a pseudo round),
any rows per fold (pseudo-labels), and the TTA'd OOF; optionally with test-time augmentation.

    make predict EXP=exp001 ARGS="tta.views=[identity,hflip] tta.oof=true"     # the stage: predict.py

predict_test reads outputs/<exp>/config.yaml (overrides apply on top, e.g. data.dir for a Kaggle notebook's
input folder, train.eval_batch_size, tta.*), labels.json and fold<k>/best.pt (a full-fit run:
seed<s>/model.pt). Writes fold<k>/test_preds.csv and test_preds.csv: the id column plus the same
prediction columns as oof_preds.csv, in test.csv order; and predict.json, what made them:
{"views", "reduce", "batched" (image), "models", "tta_oof", "overrides" (the ARGS given)}.

TTA (modality/tta.py): each model predicts every view in tta.views; the views' probabilities (or values) are
combined by tta.reduce. With tta.oof=true, every fold model also predicts its own validation rows
(outputs/<exp>/folds.csv) with the same views, and oof_preds.csv and cv.json are rewritten, so the CV
says what the views add and later stages (ensembles, pseudo-labels) see TTA'd OOF. The training-time
OOF is first copied to oof_preds_notta.csv (once: re-running with other views keeps that original);
cv.json keeps the training-time figures as cv_no_tta / folds_no_tta and gains a `tta` entry (views, reduce).
fold<k>/oof.csv stays the training-time prediction.
"""
from __future__ import annotations

import shutil
from typing import Callable

import numpy as np
import pandas as pd

from ..core.atomic import write_csv, write_json, write_with
from ..core.errors import ConfigError, DataError
from ..core.labels import LabelMap
from ..core.metrics import score
from ..core.rundir import RunPaths, get_logger, open_run, preds_frame, read_cv
from ..data.files import load_test, load_train
from ..modality import get_modality
from ..modality.tta import check_views, describe, reduce_views
from ..training.loop import infer
from ..training.setup import check_batch_split, make_accelerator
from .models import fold_checkpoints, load_model, run_models
from ..core.tables import read_table


def view_predictor(cfg, mod, label_map: LabelMap, df: pd.DataFrame, accelerator) -> Callable[[object, str], np.ndarray]:
    """(model, description) -> predictions on df's rows in df's order, with cfg.tta's views reduced by
    cfg.tta.reduce. Text views are items of the loader (sorted by length); image views run in the forward,
    all same-size views in one (tta.batched) or one pass over the data per view."""
    check_batch_split(cfg, accelerator.num_processes)
    bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    views, how, progress = list(cfg.tta.views), cfg.tta.reduce, cfg.train.progress
    if cfg.task == "text":
        loader = accelerator.prepare(mod.loader(df, None, False, bs, views=views))
        return lambda model, desc: infer(model, loader, accelerator, label_map, desc, progress, reduce=how)[0]
    loader = accelerator.prepare(mod.loader(df, None, False, bs))
    if cfg.tta.batched:
        views_fn = mod.views(views)
        return lambda model, desc: infer(model, loader, accelerator, label_map, desc, progress, views_fn, how)[0]

    def per_view(model, desc: str) -> np.ndarray:
        probs = [infer(model, loader, accelerator, label_map, f"{desc} {v}", progress, mod.views([v]))[0]
                 for v in views]
        return reduce_views(np.stack(probs), how, label_map.problem)
    return per_view


def fold_predictions(cfg, paths: RunPaths, label_map: LabelMap, df, folds: list[int], accelerator,
                     what: str = "test"):
    """Yield (k, predictions of fold k's best checkpoint on the rows of df) for every fold k, in df's order,
    with cfg.tta's views. Shared by predict (test rows), pseudo (test or unlabelled rows) and the TTA'd OOF."""
    mod = get_modality(cfg, paths.backbone)
    check_views(cfg, mod)
    predict = view_predictor(cfg, mod, label_map, df, accelerator)
    cv = read_cv(paths)
    for k in folds:
        preds = []
        for checkpoint in fold_checkpoints(paths, k, cv):  # one, or one per seed (train.seeds): their mean
            preds.append(predict(load_model(mod, label_map, checkpoint, accelerator), f"fold {k} {what}"))
            accelerator.free_memory()
        yield k, np.mean(preds, axis=0)


def tta_oof(cfg, paths: RunPaths, label_map: LabelMap, folds: list[int], accelerator, log) -> dict:
    """Every fold model predicts its validation rows with the views; oof_preds.csv and cv.json rewritten."""
    id_col = cfg.data.id_col
    cv = read_cv(paths)
    train = load_train(cfg)
    fold_of = read_table(paths.require(paths.folds, "train"), dtype={id_col: str}).set_index(id_col)["fold"]
    if set(fold_of.index) != set(train[id_col]):
        raise DataError(f"{paths.folds} and {cfg.data.dir}/{cfg.data.train_file} hold different ids; tta.oof "
                        f"needs the rows {paths.exp} was trained on (set data.dir)")
    fold_ids = fold_of.loc[train[id_col]].to_numpy()
    y = label_map.encode(train, id_col, cfg.data.train_file)
    oof = np.full((len(train), label_map.n_outputs), np.nan)
    scores, before = [], cv.get("folds_no_tta", cv["folds"])
    for k in folds:
        va = np.flatnonzero(fold_ids == k)
        (_, preds), = fold_predictions(cfg, paths, label_map, train.iloc[va], [k], accelerator, "oof")
        oof[va] = preds
        scores.append(score(cfg.metric, cfg.problem, y[va], preds))
        log.info(f"fold {k}: TTA {cfg.metric} {scores[-1]:.5f} (without TTA {before[len(scores) - 1]:.5f})")
    covered = np.isin(fold_ids, folds)
    views = {"views": list(cfg.tta.views), "reduce": cfg.tta.reduce}
    result = {**cv, "cv": score(cfg.metric, cfg.problem, y[covered], oof[covered]), "folds": scores,
              "cv_no_tta": cv.get("cv_no_tta", cv["cv"]), "folds_no_tta": before,
              "tta": views}
    if accelerator.is_main_process:
        if not paths.oof_notta.exists():  # the training-time OOF, kept once for good
            write_with(paths.oof_notta, lambda tmp: shutil.copyfile(paths.oof, tmp))
        write_csv(paths.oof, preds_frame(train[id_col], id_col, oof, label_map))
        write_json(paths.cv, result)
    log.info(f"CV {cfg.metric} with TTA {result['cv']:.5f}, without {result['cv_no_tta']:.5f} -> {paths.cv}")
    return result


def predict_models(cfg, paths: RunPaths, label_map: LabelMap, test: pd.DataFrame, accelerator, log,
                   on_model: Callable[[str, int | None, np.ndarray], None] | None = None) -> np.ndarray:
    """The mean of every model of the run (folds or full-fit seeds) on the rows of `test`, with cfg.tta's
    views; on_model(name, fold or None, predictions) after each. make predict and a code-competition bundle
    (inference/offline.py) both predict through here."""
    models = run_models(paths)
    mod = get_modality(cfg, paths.backbone)
    check_views(cfg, mod)
    if cfg.data.check_inputs:
        mod.check_inputs(test, cfg.data.test_file)
    predict = view_predictor(cfg, mod, label_map, test, accelerator)
    total = np.zeros((len(test), label_map.n_outputs))
    for name, checkpoint, k in models:
        preds = predict(load_model(mod, label_map, checkpoint, accelerator), f"{name} test")
        accelerator.free_memory()
        if on_model is not None:
            on_model(name, k, preds)
        total += preds
        log.info(f"{name}: predicted {len(test)} test rows")
    return total / len(models)


def predict_test(exp: str | None, overrides: list[str]) -> None:
    """make predict: every model of the run on test.csv (+ the TTA'd OOF with tta.oof=true)."""
    cfg, paths, label_map = open_run(exp, overrides, "predict")
    models = run_models(paths)
    folds = [k for _, _, k in models if k is not None]
    check_views(cfg, get_modality(cfg, paths.backbone))
    if cfg.tta.oof and not folds:
        raise ConfigError(f"config key 'tta.oof': {paths.exp} is a full fit and has no OOF rows; "
                          f"use it on the k-fold experiment")
    accelerator = make_accelerator(cfg)
    log = get_logger(None, accelerator.is_main_process)
    # overrides: what a code-competition bundle replays (make package), beside the views they resolved to
    record = {**describe(cfg), "models": [name for name, _, _ in models], "tta_oof": cfg.tta.oof,
              "overrides": list(overrides)}
    log.info(f"predict {paths.exp}: TTA views {record['views']}, reduce {record['reduce']}"
             + (f", batched {record['batched']}" if "batched" in record else "") + f"; models {record['models']}")
    test = load_test(cfg)
    ids, id_col = test[cfg.data.id_col], cfg.data.id_col

    per_fold: dict[int, list[np.ndarray]] = {}

    def save_fold(name: str, k: int | None, preds: np.ndarray) -> None:
        if k is not None:  # with train.seeds, fold k has one model per seed: its file holds their mean
            per_fold.setdefault(k, []).append(preds)

    mean = predict_models(cfg, paths, label_map, test, accelerator, log, save_fold)
    if accelerator.is_main_process:
        for k, preds in per_fold.items():
            write_csv(paths.fold_test_preds(k), preds_frame(ids, id_col, np.mean(preds, axis=0), label_map))
        write_csv(paths.test_preds, preds_frame(ids, id_col, mean, label_map))
        write_json(paths.predict_record, record)
    log.info(f"{paths.test_preds}: mean of {record['models']}; {paths.predict_record}")
    if cfg.tta.oof:
        tta_oof(cfg, paths, label_map, folds, accelerator, log)
