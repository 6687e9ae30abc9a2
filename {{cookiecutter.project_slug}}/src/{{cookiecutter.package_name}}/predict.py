"""Test predictions: every fold's best checkpoint, averaged; optionally with test-time augmentation.

    python -m <package>.predict --exp exp001 [key=value ...]
    make predict EXP=exp001
    make predict EXP=exp001 ARGS="tta.views=[identity,hflip] tta.oof=true"

Reads outputs/<exp>/config.yaml (overrides apply on top, e.g. data.dir for a Kaggle notebook's
input folder, train.eval_batch_size, tta.*), labels.json and fold<k>/best.pt (a full-fit run:
seed<s>/model.pt). Writes fold<k>/test_preds.csv and test_preds.csv: the id column plus the same
prediction columns as oof_preds.csv, in test.csv order; and predict.json, what made them:
{"views", "reduce", "batched" (image), "models", "tta_oof"}.

TTA (tta.py): each model predicts every view in tta.views; the views' probabilities (or values) are
combined by tta.reduce. With tta.oof=true, every fold model also predicts its own validation rows
(outputs/<exp>/folds.csv) with the same views, and oof_preds.csv and cv.json are rewritten, so the CV
says what the views add and later stages (ensembles, pseudo-labels) see TTA'd OOF. The training-time
OOF is first copied to oof_preds_notta.csv (once: re-running with other views keeps that original);
cv.json keeps the training-time figures as cv_no_tta / folds_no_tta and gains a `tta` entry (views, reduce).
fold<k>/oof.csv stays the training-time prediction.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .cli import DataError, run_stage
from .config import CONFIG_DIR, ConfigError, load, parse_overrides, read_yaml
from .data import load_test, load_train
from .loop import infer
from .metrics import score
from .modality import get_modality
from .runs import RunPaths, get_logger, write_csv, write_json, write_with
from .targets import TargetSpec
from .fitting import make_accelerator
from .train import preds_frame
from .tta import check_views, describe, reduce_views


def open_run(exp: str | None, overrides: list[str], stage: str):
    """The run's own saved config (+ overrides), its paths and label map."""
    if not exp:
        raise ConfigError(f"name the experiment: make {stage} EXP=<name>")
    # Find the run folder without resolving configs/ (a notebook may have only outputs/<exp>/).
    outputs = parse_overrides(overrides).get("paths", {}).get("outputs")
    default = CONFIG_DIR / "default.yaml"
    if outputs is None and default.exists():
        outputs = read_yaml(default).get("paths", {}).get("outputs")
    config_file = Path(outputs or "outputs") / exp / "config.yaml"
    if not config_file.exists():
        raise ConfigError(f"{config_file} does not exist: run `make train EXP={exp}` first")
    cfg = load(exp, overrides, base=config_file)
    paths = RunPaths(cfg)
    spec = TargetSpec.load(paths.require(paths.labels, "train"))
    if paths.oof.exists():  # written at training from the same map: an edited or swapped labels.json shows here
        trained = [c for c in pd.read_csv(paths.oof, nrows=0).columns if c != cfg.data.id_col]
        if trained != spec.pred_cols:
            raise DataError(f"{paths.labels} predicts {spec.pred_cols[:10]} but the run was trained for "
                            f"{trained[:10]} ({paths.oof}); restore the run's own labels.json or re-run "
                            f"make train EXP={paths.exp}")
    return cfg, paths, spec


def trained_folds(paths: RunPaths) -> list[int]:
    cv = json.loads(paths.require(paths.cv, "train").read_text())
    folds = cv["folds_run"]
    missing = [k for k in folds if not paths.checkpoint(k).exists()]
    if missing:
        raise ConfigError(f"{paths.dir} lacks checkpoints for folds {missing}; re-run make train EXP={paths.exp}")
    return folds


def run_models(paths: RunPaths) -> list[tuple[str, Path, int | None]]:
    """(name, checkpoint, fold) of every model of the run: fold k's best.pt, or a full fit's seed models."""
    cv = json.loads(paths.require(paths.cv, "train").read_text())
    if "method" in cv:
        raise ConfigError(f"{paths.dir} is an ensemble: make ensemble already wrote its test_preds.csv")
    if cv.get("full_fit"):
        models = [(f"seed {s}", paths.seed_checkpoint(s), None) for s in cv["seeds"]]
        missing = [name for name, path, _ in models if not path.exists()]
        if missing:
            raise ConfigError(f"{paths.dir} lacks the full-fit models {missing}; re-run the full fit")
        return models
    return [(f"fold {k}", paths.checkpoint(k), k) for k in trained_folds(paths)]


def view_predictor(cfg, mod, spec: TargetSpec, df: pd.DataFrame, accelerator) -> Callable[[object, str], np.ndarray]:
    """(model, description) -> predictions on df's rows in df's order, with cfg.tta's views reduced by
    cfg.tta.reduce. Text views are items of the loader (sorted by length); image views run in the forward,
    all same-size views in one (tta.batched) or one pass over the data per view."""
    bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    views, how, progress = list(cfg.tta.views), cfg.tta.reduce, cfg.train.progress
    if cfg.task == "text":
        loader = accelerator.prepare(mod.loader(df, None, False, bs, views=views))
        return lambda model, desc: infer(model, loader, accelerator, spec, desc, progress, reduce=how)[0]
    loader = accelerator.prepare(mod.loader(df, None, False, bs))
    if cfg.tta.batched:
        return lambda model, desc: infer(model, loader, accelerator, spec, desc, progress, mod.views(views), how)[0]

    def per_view(model, desc: str) -> np.ndarray:
        probs = [infer(model, loader, accelerator, spec, f"{desc} {v}", progress, mod.views([v]))[0] for v in views]
        return reduce_views(np.stack(probs), how, spec.problem)
    return per_view


def load_model(mod, spec: TargetSpec, checkpoint: Path, accelerator):
    model = mod.build_model(spec.n_outputs, pretrained=False)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrong = [k for k, v in state.items() if k in shapes and v.shape != shapes[k]]
    if wrong:  # e.g. a head for another class count: load_state_dict would only say "size mismatch"
        k = wrong[-1]
        raise DataError(f"{checkpoint} does not fit the run's labels.json ({spec.n_outputs} outputs "
                        f"{spec.pred_cols[:10]}): its {k} has shape {tuple(state[k].shape)}, the model built from "
                        f"labels.json {tuple(shapes[k])}; the checkpoint or labels.json comes from another run")
    model.load_state_dict(state)
    return accelerator.prepare(model)


def fold_predictions(cfg, paths: RunPaths, spec: TargetSpec, df, folds: list[int], accelerator,
                     what: str = "test"):
    """Yield (k, predictions of fold k's best checkpoint on the rows of df) for every fold k, in df's order,
    with cfg.tta's views. Shared by predict (test rows), pseudo (test or unlabelled rows) and the TTA'd OOF."""
    mod = get_modality(cfg, paths.backbone)
    check_views(cfg, mod)
    predict = view_predictor(cfg, mod, spec, df, accelerator)
    for k in folds:
        preds = predict(load_model(mod, spec, paths.checkpoint(k), accelerator), f"fold {k} {what}")
        accelerator.free_memory()
        yield k, preds


def tta_oof(cfg, paths: RunPaths, spec: TargetSpec, folds: list[int], accelerator, log) -> dict:
    """Every fold model predicts its validation rows with the views; oof_preds.csv and cv.json rewritten."""
    id_col = cfg.data.id_col
    cv = json.loads(paths.cv.read_text())
    train = load_train(cfg)
    fold_of = pd.read_csv(paths.require(paths.folds, "train"), dtype={id_col: str}).set_index(id_col)["fold"]
    if set(fold_of.index) != set(train[id_col]):
        raise DataError(f"{paths.folds} and {cfg.data.dir}/{cfg.data.train_file} hold different ids; tta.oof "
                        f"needs the rows {paths.exp} was trained on (set data.dir)")
    fold_ids = fold_of.loc[train[id_col]].to_numpy()
    y = spec.encode(train, id_col, cfg.data.train_file)
    oof = np.full((len(train), spec.n_outputs), np.nan)
    scores, before = [], cv.get("folds_no_tta", cv["folds"])
    for k in folds:
        va = np.flatnonzero(fold_ids == k)
        (_, preds), = fold_predictions(cfg, paths, spec, train.iloc[va], [k], accelerator, "oof")
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
        write_csv(paths.oof, preds_frame(train[id_col], id_col, oof, spec))
        write_json(paths.cv, result)
    log.info(f"CV {cfg.metric} with TTA {result['cv']:.5f}, without {result['cv_no_tta']:.5f} -> {paths.cv}")
    return result


def run(exp: str | None, overrides: list[str]):
    cfg, paths, spec = open_run(exp, overrides, "predict")
    models = run_models(paths)
    folds = [k for _, _, k in models if k is not None]
    mod = get_modality(cfg, paths.backbone)
    check_views(cfg, mod)
    if cfg.tta.oof and not folds:
        raise ConfigError(f"config key 'tta.oof': {paths.exp} is a full fit and has no OOF rows; "
                          f"use it on the k-fold experiment")
    accelerator = make_accelerator(cfg)
    log = get_logger(None, accelerator.is_main_process)
    record = {**describe(cfg), "models": [name for name, _, _ in models], "tta_oof": cfg.tta.oof}
    log.info(f"predict {paths.exp}: TTA views {record['views']}, reduce {record['reduce']}"
             + (f", batched {record['batched']}" if "batched" in record else "") + f"; models {record['models']}")
    test = load_test(cfg)
    if cfg.data.check_inputs:
        mod.check_inputs(test, cfg.data.test_file)
    ids, id_col = test[cfg.data.id_col], cfg.data.id_col
    predict = view_predictor(cfg, mod, spec, test, accelerator)
    total = np.zeros((len(test), spec.n_outputs))
    for name, checkpoint, k in models:
        preds = predict(load_model(mod, spec, checkpoint, accelerator), f"{name} test")
        accelerator.free_memory()
        if accelerator.is_main_process and k is not None:
            write_csv(paths.fold_test_preds(k), preds_frame(ids, id_col, preds, spec))
        total += preds
        log.info(f"{name}: predicted {len(test)} test rows")
    if accelerator.is_main_process:
        write_csv(paths.test_preds, preds_frame(ids, id_col, total / len(models), spec))
        write_json(paths.predict_record, record)
    log.info(f"{paths.test_preds}: mean of {record['models']}; {paths.predict_record}")
    if cfg.tta.oof:
        tta_oof(cfg, paths, spec, folds, accelerator, log)


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
