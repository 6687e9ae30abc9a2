"""Full fit: every train row, the epoch count the CV run chose, one model per seed; test predictions.

    make train EXP=exp001 ARGS="train.full_fit=true train.seeds=[1,2,3]"     # the stage: train.py

Needs the k-fold run of the same experiment (outputs/exp001/cv.json): the full fit trains for the
median of its folds' best epochs (train.epochs when it used SWA, whose model is the last epoch's),
with every trick of the config, and without validation. Writes outputs/exp001_full/: config.yaml (with
the chosen train.epochs), labels.json, folds.csv (the CV run's, so ensembles can check it), train.log,
history.csv (train loss per seed and epoch), seed<s>/model.pt (the EMA / SWA weights when those are
on) and cv.json {"kind": "full_fit", "full_fit": true, "cv_source": "exp001", "cv": the CV run's cv, ...}.
It does not predict: the train stage then runs the same test prediction as make predict (inference/),
test_preds.csv being the mean over seeds (`make predict EXP=exp001_full` redoes it, with TTA if asked).
It has no OOF of its
own: `make ensemble` takes the CV run's OOF for the weights and says so; `make submit` works as usual.
A full fit usually gains a little from the extra 1/k of data, but nothing measures it: keep the CV run
as the compass, and submit the full fit (or a blend with the fold models) on trust.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from accelerate.utils import set_seed

from ..core.atomic import write_csv, write_json, write_text
from ..core.config import dump, flatten, read_yaml, to_dict
from ..core.errors import ConfigError
from ..core.metrics import METRICS
from ..core.records import finish_record, start_record
from ..core.rundir import RunPaths, create_run_dir, get_logger, read_cv, refuse_existing, run_kind
from ..core.schema import Config
from ..data.files import competition_files
from ..data.preflight import load_all
from ..modality import get_modality
from .checkpoints import save_weights
from .fit import build_tricks, final_model, fit_epoch, prepare_fit
from .setup import check_batch_split, make_accelerator, processes
from ..core.tables import read_table

# keys a full fit may change without making its CV run's figures meaningless for it
FREE = ("exp", "overwrite", "train.full_fit", "train.seeds", "train.epochs", "train.folds", "train.progress",
        "train.num_workers", "train.eval_batch_size", "train.device", "train.save_every")


def chosen_epochs(cfg: Config, cv: dict) -> int:
    best = [e for e in cv.get("best_epochs", []) if isinstance(e, int)]
    if cfg.swa.enabled or not best:
        return cfg.train.epochs
    return max(1, int(round(float(np.median(best)))))


def fit_seed(cfg: Config, seed: int, train_df, y_fit, mod, label_map, accelerator, paths: RunPaths,
             history: list, log) -> None:
    """One model on every row for cfg.train.epochs, saved as seed<s>/model.pt (its EMA / SWA weights if on)."""
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = mod.loader(train_df, y_fit, True, cfg.train.batch_size, generator=gen)
    fit = prepare_fit(cfg, mod, label_map, accelerator, loader, y_fit)
    for epoch in range(1, cfg.train.epochs + 1):
        t1 = time.time()
        loss = fit_epoch(cfg, fit, accelerator, epoch, f"seed {seed} epoch {epoch}")
        history.append(dict(seed=seed, epoch=epoch, train_loss=loss, lr=fit.optimizer.param_groups[0]["lr"],
                            seconds=round(time.time() - t1, 2)))
        log.info(f"seed {seed} epoch {epoch}/{cfg.train.epochs}  train_loss {loss:.4f}")
    final = final_model(fit, accelerator)
    if accelerator.is_main_process:
        save_weights(paths.seed_checkpoint(seed), accelerator.unwrap_model(final), epoch=cfg.train.epochs, seed=seed)
        write_csv(paths.history, pd.DataFrame(history))
    accelerator.free_memory()


def run_full_fit(cfg: Config) -> dict:
    """Train the full-fit models of cfg's k-fold run; outputs/<exp>_full/ as above, without test predictions."""
    source = RunPaths(cfg)
    src_cv = read_cv(source)
    if run_kind(source, src_cv) not in ("kfold", "pseudo"):
        raise ConfigError(f"{source.dir} is not a k-fold run; train.full_fit=true needs EXP=<the k-fold experiment>")
    saved = flatten(read_yaml(source.config))
    changed = sorted(k for k, v in flatten(to_dict(cfg)).items()
                     if k in saved and saved[k] != v and not k.startswith(FREE) and not k.startswith("tta."))
    cfg.train.epochs = chosen_epochs(cfg, src_cv)
    cfg.exp = f"{source.exp}_full"
    paths = RunPaths(cfg)
    accelerator = make_accelerator(cfg)
    check_batch_split(cfg, accelerator.num_processes)
    refuse_existing(paths, cfg.overwrite)
    train_df, _, label_map = load_all(cfg)
    mod = get_modality(cfg)
    y_fit = label_map.encode(train_df, cfg.data.id_col, cfg.data.train_file, scaled=True)
    build_tricks(cfg, label_map, mod.build_model(label_map.n_outputs, cfg.model.pretrained), y_fit)
    seeds = cfg.train.seeds or [cfg.seed]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"config key 'train.seeds' repeats a seed: {seeds}")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        create_run_dir(paths, cfg.overwrite)
        write_text(paths.config, dump(cfg))
        start_record(paths, data_files=competition_files(cfg), **processes(cfg, accelerator))
        label_map.save(paths.labels)
        write_csv(paths.folds, read_table(source.require(source.folds, "train"), dtype={cfg.data.id_col: str}))
        mod.save_assets(paths.backbone)
    accelerator.wait_for_everyone()
    log = get_logger(paths.log if accelerator.is_main_process else None, accelerator.is_main_process)
    if changed:
        log.warning(f"full fit differs from {source.exp}'s config in {changed}: its CV does not describe this run")
    log.info(f"full fit of {source.exp}: {len(train_df)} rows, {cfg.train.epochs} epochs (median best epoch of "
             f"the CV run), seeds {seeds}")
    history, t0 = [], time.time()
    for seed in seeds:
        fit_seed(cfg, seed, train_df, y_fit, mod, label_map, accelerator, paths, history, log)
    result = {"kind": "full_fit", "full_fit": True, "cv_source": source.exp, "metric": cfg.metric, "cv": src_cv["cv"],
              "greater_is_better": METRICS[cfg.metric].greater_is_better, "n_folds": cfg.train.n_folds,
              "folds_run": [], "seeds": seeds, "epochs": cfg.train.epochs, "wall_seconds": round(time.time() - t0, 1),
              **processes(cfg, accelerator)}
    if accelerator.is_main_process:
        finish_record(paths, status="finished", cv=result["cv"])
        write_json(paths.cv, result)
    accelerator.wait_for_everyone()
    return result
