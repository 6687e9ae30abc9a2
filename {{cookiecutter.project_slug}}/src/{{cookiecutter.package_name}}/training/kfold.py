"""K-fold training: per fold the best checkpoint by the validation metric, then OOF predictions and CV.

    make train EXP=exp001 ARGS="train.epochs=3"     # the stage: train.py
    make train EXP=exp001 RESUME=1                  # after a crash: done folds skipped, the interrupted one continued

Writes outputs/<exp>/: config.yaml, run.json (+ code.diff), labels.json, folds.csv, train.log, history.csv,
loss_fold<k>.png, fold<k>/best.pt, fold<k>/oof.csv, fold<k>/done.json, oof_preds.csv (train.csv order),
cv.json (with "kind": kfold, or pseudo for make pseudo); fold<k>/last.pt while a fold runs
(checkpoints.py). Every input check runs before the first batch; a finished experiment is only replaced
with overwrite=true. A NaN / inf training loss stops the run with the fold, epoch and step.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..core.atomic import write_csv, write_json, write_text
from ..core.config import dump, flatten, to_dict
from ..core.errors import DataError
from ..core.labels import LabelMap
from ..core.metrics import METRICS, is_better, score
from ..core.records import data_fingerprint, finish_record, note_resume, start_record
from ..core.rundir import RunPaths, create_run_dir, get_logger, preds_frame, refuse_existing
from ..core.schema import Config
from ..data.files import competition_files
from ..data.preflight import load_all
from ..data.splits import load_or_make_folds
from ..modality import get_modality
from .checkpoints import (FoldState, check_resumable, clear_partial_saves, load_fold_state, mark_done, read_done,
                          weights)
from .evals import run_epochs
from .fit import Fit, PseudoRows, build_tricks, prepare_fit, training_rows
from .loop import infer
from .plots import save_fold_plot
from .saver import SAVER
from .setup import check_batch_split, make_accelerator, processes
from .tracking import Trackers, check_trackers, open_trackers


@dataclass
class FoldResult:
    preds: np.ndarray
    score: float
    best_epoch: int | float | str   # float: a fractional epoch (train.eval_every)


@dataclass
class FoldRun:
    """What one fold's epochs share: its data, its fit, where it writes, and the best result so far."""
    cfg: Config
    k: int
    fit: Fit
    val_loader: object
    y_val: np.ndarray
    label_map: LabelMap
    paths: RunPaths
    accelerator: Accelerator
    log: object
    history: list
    rows: list
    trackers: Trackers | None
    best: FoldResult | None = None
    seed: int | None = None     # train.seeds on a k-fold run: the seed of this model of fold k
    on_eval: Callable[[int, int, float], None] | None = None   # (k, n-th evaluation of the fold, score): make tune
    pending_best: tuple | None = None   # (best.pt, weights()) of an improvement not yet queued for writing

    @property
    def name(self) -> str:
        return RunPaths.slot_name(self.k, self.seed)

    def take_best(self) -> tuple | None:
        """best.pt's path and weights when the fold improved since this was last called, else None."""
        best, self.pending_best = self.pending_best, None
        return best

    def evaluate(self, module, epoch, tr_loss: float, t0: float, step: int | None = None) -> bool:
        """Validation pass; history row, log line, tracker metrics; when the score improved (returned), best.pt's
        weights, held until the next resume point or the fold's end writes them (evals.resume_point).
        step: the optimiser step of an evaluation inside the epochs (train.eval_every; epoch is then fractional)."""
        cfg, k = self.cfg, self.k
        preds, va_loss = infer(module, self.val_loader, self.accelerator, self.label_map, f"{self.name} valid",
                               cfg.train.progress)
        s = score(cfg.metric, cfg.problem, self.y_val, preds)
        improved = is_better(cfg.metric, s, None if self.best is None else self.best.score)  # never a NaN score
        at = {} if step is None else {"step": step}
        self.rows.append(dict(fold=k, **({} if self.seed is None else {"seed": self.seed}), epoch=epoch, **at,
                              train_loss=tr_loss, valid_loss=va_loss, score=s,
                              lr=self.fit.optimizer.param_groups[0]["lr"], seconds=round(time.time() - t0, 2)))
        self.history.append(self.rows[-1])
        where = f"epoch {epoch}/{cfg.train.epochs}" if step is None else f"step {step} (epoch {epoch})"
        self.log.info(f"{self.name} {where}  train_loss {tr_loss:.4f}  valid_loss "
                      f"{va_loss:.4f}  {cfg.metric} {s:.5f}{'  *best' if improved else ''}  "
                      f"({self.rows[-1]['seconds']}s)")
        if self.trackers is not None:
            tag = f"fold{k}" + ("" if self.seed is None else f"_seed{self.seed}")
            self.trackers.log_metrics({f"{tag}/{m}": self.rows[-1][m] for m in ("train_loss", "valid_loss",
                                                                                   "score", "lr")},
                                      step=step if step is not None else epoch if isinstance(epoch, int)
                                      else cfg.train.epochs)
        main = self.accelerator.is_main_process
        if improved:
            self.best = FoldResult(preds, s, epoch)
            if main:
                self.pending_best = (self.paths.checkpoint(k, self.seed),
                                     weights(self.accelerator.unwrap_model(module), epoch=epoch, score=s,
                                             metric=cfg.metric, **at))
        if main:
            write_csv(self.paths.history, pd.DataFrame(self.history))
        if self.on_eval is not None:  # after the files: a pruned trial's folder holds this evaluation
            self.on_eval(k, len(self.rows), s)
        return improved


def fold_loaders(cfg: Config, k: int, train_df, y_fit, folds, mod, extra: PseudoRows | None, seed: int):
    """Fold k's training loader (+ pseudo rows, shuffling seeded by seed + k) and validation loader."""
    tr, va = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    gen = torch.Generator().manual_seed(seed + k)
    fit_df, fit_y, fit_w = training_rows(train_df, y_fit, tr, extra, cfg.loss.label_smoothing)
    train_loader = mod.loader(fit_df, fit_y, True, cfg.train.batch_size, generator=gen, weights=fit_w)
    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    return tr, va, gen, train_loader, mod.loader(train_df.iloc[va], y_fit[va], False, eval_bs)


def fit_fold(cfg: Config, k: int, train_df, y_fit, y_true, folds, mod, label_map: LabelMap, paths: RunPaths,
             accelerator: Accelerator, log, history: list[dict], extra: PseudoRows | None = None,
             resume: bool = False, trackers: Trackers | None = None, seed: int | None = None,
             on_eval=None) -> FoldResult:
    """One model of fold k, seeded by seed + k (seed: cfg.seed, or one of train.seeds on a k-fold run)."""
    base = cfg.seed if seed is None else seed
    set_seed(base + k)
    tr, va, gen, train_loader, val_loader = fold_loaders(cfg, k, train_df, y_fit, folds, mod, extra, base)
    fit = prepare_fit(cfg, mod, label_map, accelerator, train_loader, y_fit[tr], val_loader)
    st = FoldState(rows=[])
    state_file = paths.fold_state(k, seed)
    run = FoldRun(cfg, k, fit, fit.eval_loaders[0], y_true[va], label_map, paths, accelerator, log, history,
                  st.rows, trackers, None, seed, on_eval)
    if resume and state_file.is_file():
        st = load_fold_state(state_file, fit, accelerator, gen)
        history.extend(st.rows)
        run.rows, run.best = st.rows, FoldResult(**st.best) if st.best else None
        log.info(f"{run.name}: resumed after epoch {st.epoch}{f' + {st.batches} batches' if st.batches else ''} "
                 f"from {state_file}")
    run_epochs(cfg, run, fit, accelerator, st, gen, state_file)  # evaluations, resume points, early stop
    if fit.swa is not None:
        # SWA's averaged model is the fold's model: no best-epoch selection on top of it
        t0 = time.time()
        with accelerator.autocast():
            fit.swa.finalize(fit.loader)
        run.best = None
        run.evaluate(fit.swa.module, "swa", st.train_loss, t0)
    if run.best is None:
        raise DataError(f"{run.name}: the validation {cfg.metric} was NaN in every epoch; check the targets of "
                        f"that fold (e.g. a single class makes AUC undefined)")
    if accelerator.is_main_process:
        if run.pending_best is not None:
            SAVER.save(run.take_best())
        finish_fold(cfg, k, run, train_df[cfg.data.id_col].iloc[va])  # done.json once best.pt is on disk
    accelerator.free_memory()
    return run.best


def finish_fold(cfg: Config, k: int, run: FoldRun, val_ids: pd.Series) -> None:
    """Loss plot, the fold's OOF (float64, read back bit-exactly when a resumed run skips the fold), done.json."""
    # the SWA evaluation is plotted at the last epoch (it averages the weights up to there)
    plot = pd.DataFrame([{**r, "epoch": cfg.train.epochs if r["epoch"] == "swa" else r["epoch"]} for r in run.rows])
    save_fold_plot(run.paths.loss_plot(k, run.seed), plot, run.name, cfg.metric)
    write_csv(run.paths.fold_oof(k, run.seed), preds_frame(val_ids, cfg.data.id_col,
                                                           run.best.preds.astype(np.float64), run.label_map))
    mark_done(run.paths, k, run.best.score, run.best.best_epoch, run.rows, run.seed)


def open_kfold_run(cfg: Config, accelerator, train_df, label_map, mod, folds_df, before_training,
                   resume: bool) -> pd.DataFrame:
    """The folds, then the run folder: checked for a resume, or created with config, record, labels, folds."""
    paths = RunPaths(cfg)
    hashes = data_fingerprint(competition_files(cfg))
    if accelerator.is_main_process:  # the shared folds file is written once, by one process
        folds = folds_df if folds_df is not None else load_or_make_folds(cfg, train_df, label_map)
    accelerator.wait_for_everyone()  # every process has checked the inputs before anything is written
    if not accelerator.is_main_process:
        folds = folds_df if folds_df is not None else load_or_make_folds(cfg, train_df, label_map)
    if resume:
        check_resumable(cfg, paths, folds, hashes)
    if accelerator.is_main_process:
        if resume:
            left = clear_partial_saves(paths.dir)
            note_resume(paths, argv=sys.argv, partial_saves_removed=[str(p) for p in left])
        else:
            create_run_dir(paths, cfg.overwrite)
            write_text(paths.config, dump(cfg))
            start_record(paths, data_files=competition_files(cfg), **processes(cfg, accelerator))
            label_map.save(paths.labels)
            write_csv(paths.folds, folds)
            mod.save_assets(paths.backbone)
            if before_training is not None:
                before_training(paths)
    accelerator.wait_for_everyone()
    return folds


def train_kfold(cfg: Config, folds_df: pd.DataFrame | None = None, extra: dict[int, PseudoRows] | None = None,
                before_training: Callable[[RunPaths], None] | None = None, resume: bool = False,
                kind: str = "kfold", on_fold: Callable[[int, float], None] | None = None,
                on_eval: Callable[[int, int, float], None] | None = None) -> dict:
    """K-fold training of cfg. folds_df: the folds to use (default: the data set's shared folds file);
    extra: rows added to fold k's training part (pseudo-labels); before_training(paths): writes more
    files into the fresh run folder (main process, after the folder is created); resume: continue the
    interrupted run in outputs/<exp>/ (checkpoints.py); kind: cv.json's "kind" (kfold | pseudo); on_fold(k, score):
    called after each fold (skipped ones too) with its score; on_eval(k, n, score): after the n-th evaluation of
    fold k (per epoch, or every train.eval_every steps); what either raises ends the run (make tune prunes)."""
    paths = RunPaths(cfg)
    accelerator = make_accelerator(cfg)
    check_batch_split(cfg, accelerator.num_processes)
    if not resume:
        refuse_existing(paths, cfg.overwrite)  # before any work
    check_trackers(cfg)
    train_df, _, label_map = load_all(cfg)
    mod = get_modality(cfg)
    y_fit = label_map.encode(train_df, cfg.data.id_col, cfg.data.train_file, scaled=True)
    # Build the model and every trick once before anything is written: unreachable weights, a bad
    # adv.param_pattern or loss for this problem fail here, not after the run folder exists.
    build_tricks(cfg, label_map, mod.build_model(label_map.n_outputs, cfg.model.pretrained), y_fit)
    folds = open_kfold_run(cfg, accelerator, train_df, label_map, mod, folds_df, before_training, resume)
    log = get_logger(paths.log if accelerator.is_main_process else None, accelerator.is_main_process)
    log.info(f"experiment {cfg.exp}: {cfg.task}/{cfg.problem}, {len(train_df)} train rows, model {cfg.model.name}, "
             f"metric {cfg.metric}, device {accelerator.device} x {accelerator.num_processes}"
             f"{'  (resumed)' if resume else ''}")
    with accelerator.main_process_first():  # data.cache=disk: one process decodes, the others read its file
        mod.warm(train_df)
    trackers = open_trackers(cfg, cfg.exp, accelerator.is_main_process)
    trackers.log_params(flatten(to_dict(cfg)))
    try:
        result = run_folds(cfg, train_df, y_fit, label_map, folds, mod, paths, accelerator, log, extra, resume,
                           trackers, kind, on_fold, on_eval)
    except BaseException as e:
        try:
            SAVER.flush()  # the last queued resume point reaches the disk: RESUME=1 continues from it
        except Exception as write_error:  # noqa: BLE001 - the run's own error is the one to raise
            log.error(f"a checkpoint write failed too: {write_error}")
        if accelerator.is_main_process:
            finish_record(paths, status=f"failed: {type(e).__name__}: {e}"[:500])
        trackers.close("FAILED")
        raise
    if accelerator.is_main_process:
        finish_record(paths, status="finished", cv=result["cv"])
    trackers.log_metrics({"cv": result["cv"]}, step=cfg.train.epochs)
    trackers.close()
    return result


def run_folds(cfg: Config, train_df, y_fit, label_map: LabelMap, folds, mod, paths: RunPaths, accelerator, log,
              extra, resume: bool, trackers: Trackers, kind: str, on_fold=None, on_eval=None) -> dict:
    id_col = cfg.data.id_col
    y_true = label_map.encode(train_df, id_col, cfg.data.train_file)
    fold_ids = folds["fold"].to_numpy()
    seeds = cfg.train.seeds or [None]   # None: one model per fold, seeded by cfg.seed
    oofs = {s: np.full((len(train_df), label_map.n_outputs), np.nan, dtype=np.float64) for s in seeds}
    fold_list = cfg.train.folds or list(range(cfg.train.n_folds))
    history: list[dict] = []
    scores, seed_scores, best_epochs = [], {s: [] for s in seeds}, []
    t0 = time.time()
    for k in fold_list:
        ids = train_df[id_col][fold_ids == k]
        for seed in seeds:
            res = fold_model(cfg, k, seed, ids, train_df, y_fit, y_true, fold_ids, mod, label_map, paths,
                             accelerator, log, history, (extra or {}).get(k), resume, trackers, on_eval)
            oofs[seed][fold_ids == k] = res.preds
            seed_scores[seed].append(res.score)
            best_epochs.append(res.best_epoch)
        if seeds != [None]:  # the fold's prediction: the mean of its seeds' models
            mean = np.mean([oofs[s][fold_ids == k] for s in seeds], axis=0)
            scores.append(score(cfg.metric, cfg.problem, y_true[fold_ids == k], mean))
            if accelerator.is_main_process:
                write_csv(paths.fold_oof(k), preds_frame(ids, id_col, mean, label_map))
            log.info(f"fold {k}: mean of seeds {seeds}: {cfg.metric} {scores[-1]:.5f} "
                     f"(each {[round(seed_scores[s][-1], 5) for s in seeds]})")
        else:
            scores.append(seed_scores[None][-1])
        if on_fold is not None:
            on_fold(k, scores[-1])

    covered = np.isin(fold_ids, fold_list)
    oof = np.mean([oofs[s] for s in seeds], axis=0)
    cv = score(cfg.metric, cfg.problem, y_true[covered], oof[covered])
    result = {"metric": cfg.metric, "cv": cv, "folds": scores, "folds_run": list(fold_list),
              "greater_is_better": METRICS[cfg.metric].greater_is_better, "n_folds": cfg.train.n_folds,
              "best_epochs": best_epochs, "wall_seconds": round(time.time() - t0, 1), "kind": kind,
              **processes(cfg, accelerator)}
    if seeds != [None]:
        result.update(seeds=seeds, seed_cv={str(s): score(cfg.metric, cfg.problem, y_true[covered], oofs[s][covered])
                                            for s in seeds},
                      seed_folds={str(s): seed_scores[s] for s in seeds})
    if accelerator.is_main_process:
        write_csv(paths.oof, preds_frame(train_df[id_col], id_col, oof, label_map))
        write_json(paths.cv, result)
    each = "" if seeds == [None] else f"  seeds {[round(v, 5) for v in result['seed_cv'].values()]}"
    log.info(f"CV {cfg.metric}: {cv:.5f}  folds {[round(s, 5) for s in scores]}{each}  -> {paths.cv}")
    return result


def fold_model(cfg: Config, k: int, seed: int | None, ids: pd.Series, train_df, y_fit, y_true, fold_ids, mod,
               label_map: LabelMap, paths: RunPaths, accelerator, log, history: list, extra, resume: bool,
               trackers: Trackers, on_eval=None) -> FoldResult:
    """Fold k's model of one seed: read back when it finished before an interruption, else trained."""
    name = RunPaths.slot_name(k, seed)
    if resume and paths.fold_done(k, seed).is_file():
        done, preds = read_done(paths, k, cfg.data.id_col, ids, seed)
        history.extend(done["rows"])
        if accelerator.is_main_process:
            paths.fold_state(k, seed).unlink(missing_ok=True)  # killed between the marker and this removal
        log.info(f"{name}: finished before the interruption, skipped")
        res = FoldResult(preds, done["score"], done["best_epoch"])
    else:
        res = fit_fold(cfg, k, train_df, y_fit, y_true, fold_ids, mod, label_map, paths, accelerator, log, history,
                       extra=extra, resume=resume, trackers=trackers, seed=seed, on_eval=on_eval)
    log.info(f"{name}: best {cfg.metric} {res.score:.5f} at epoch {res.best_epoch}")
    return res
