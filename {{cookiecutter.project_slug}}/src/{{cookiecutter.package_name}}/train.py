"""K-fold training: per fold the best checkpoint by the validation metric, then OOF predictions and CV.

    python -m <package>.train --exp exp001 train.epochs=3 model.name=resnet34
    make train EXP=exp001 ARGS="train.epochs=3"
    make train EXP=exp001 RESUME=1          # after a crash: finished folds skipped, the interrupted one continued

Writes outputs/<exp>/: config.yaml, run.json (+ code.diff), labels.json, folds.csv, train.log, history.csv,
loss_fold<k>.png, fold<k>/best.pt, fold<k>/oof.csv, fold<k>/done.json, oof_preds.csv (train.csv order),
cv.json; fold<k>/last.pt while a fold runs (resume.py). Every input check runs before the first batch; a
finished experiment is only replaced with overwrite=true. A NaN / inf training loss stops the run with
the fold, epoch and step.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from .cli import DataError, run_stage
from .config import Config, ConfigError, dump, flatten, load, to_dict
from .data import data_path, load_all
# the shared training pieces; importable from here too (predict, pseudo, sanity, pretrain and tests use them)
from .fitting import (ExtraRows, Fit, build_tricks, configure_determinism, fit_epoch,  # noqa: F401
                      make_accelerator, prepare_fit, training_rows)
from .folds import load_or_make_folds
from .loop import infer
from .metrics import METRICS, is_better, score
from .modality import get_modality
from .records import data_fingerprint, finish_record, note_resume, start_record
from .resume import (FoldState, check_resumable, clear_partial_saves, load_fold_state, mark_done, read_done,
                     save_fold_state)
from .runs import RunPaths, atomic_path, get_logger, prepare_run_dir, write_csv, write_json, write_text
from .targets import TargetSpec
from .tracking import Trackers, check_trackers, open_trackers


def preds_frame(ids: pd.Series, id_col: str, preds: np.ndarray, spec: TargetSpec) -> pd.DataFrame:
    df = pd.DataFrame(preds, columns=spec.pred_cols)
    df.insert(0, id_col, ids.to_numpy())
    return df


def save_loss_plot(path, hist: pd.DataFrame, fold: int, metric: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(hist["epoch"], hist["train_loss"], "o-", label="train loss")
    ax.plot(hist["epoch"], hist["valid_loss"], "o-", label="valid loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(hist["epoch"], hist["score"], "s--", color="gray", label=metric)
    ax2.set_ylabel(metric)
    ax.legend(loc="upper left")
    ax.set_title(f"fold {fold}: train vs valid loss")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


@dataclass
class FoldResult:
    preds: np.ndarray
    score: float
    best_epoch: int | str


def save_checkpoint(path, module, epoch, s: float, metric: str) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": module.state_dict(), "epoch": epoch, "score": s, "metric": metric}, tmp)


def fit_fold(cfg: Config, k: int, train_df, y_fit, y_true, folds, mod, spec: TargetSpec, paths: RunPaths,
             accelerator: Accelerator, log, history: list[dict], extra: ExtraRows | None = None,
             resume: bool = False, trackers: Trackers | None = None) -> FoldResult:
    set_seed(cfg.seed + k)
    tr = np.flatnonzero(folds != k)
    va = np.flatnonzero(folds == k)
    gen = torch.Generator().manual_seed(cfg.seed + k)
    fit_df, fit_y, fit_w = training_rows(train_df, y_fit, tr, extra, cfg.loss.label_smoothing)
    train_loader = mod.loader(fit_df, fit_y, True, cfg.train.batch_size, generator=gen, weights=fit_w)
    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    val_loader = mod.loader(train_df.iloc[va], y_fit[va], False, eval_bs)
    fit = prepare_fit(cfg, mod, spec, accelerator, train_loader, y_fit[tr], val_loader)
    val_loader = fit.extra[0]
    model, optimizer, tricks, swa = fit.model, fit.optimizer, fit.tricks, fit.swa

    st = FoldState(rows=[])
    if resume and paths.fold_state(k).is_file():
        st = load_fold_state(paths.fold_state(k), fit, accelerator, gen)
        history.extend(st.rows)
        log.info(f"fold {k}: resumed after epoch {st.epoch} from {paths.fold_state(k)}")
    best: FoldResult | None = FoldResult(**st.best) if st.best else None
    rows = st.rows

    def evaluate(module, epoch, tr_loss, t0):
        nonlocal best
        preds, va_loss = infer(module, val_loader, accelerator, spec, f"fold {k} valid", cfg.train.progress)
        s = score(cfg.metric, cfg.problem, y_true[va], preds)
        improved = is_better(cfg.metric, s, None if best is None else best.score)  # never a NaN score
        rows.append(dict(fold=k, epoch=epoch, train_loss=tr_loss, valid_loss=va_loss, score=s,
                         lr=optimizer.param_groups[0]["lr"], seconds=round(time.time() - t0, 2)))
        history.append(rows[-1])
        log.info(f"fold {k} epoch {epoch}/{cfg.train.epochs}  train_loss {tr_loss:.4f}  valid_loss {va_loss:.4f}"
                 f"  {cfg.metric} {s:.5f}{'  *best' if improved else ''}  ({rows[-1]['seconds']}s)")
        if trackers is not None:
            trackers.log_metrics({f"fold{k}/{m}": rows[-1][m] for m in ("train_loss", "valid_loss", "score", "lr")},
                                 step=epoch if isinstance(epoch, int) else cfg.train.epochs)
        if improved:
            best = FoldResult(preds, s, epoch)
            if accelerator.is_main_process:
                save_checkpoint(paths.checkpoint(k), accelerator.unwrap_model(module), epoch, s, cfg.metric)
        if accelerator.is_main_process:
            write_csv(paths.history, pd.DataFrame(history))

    for epoch in range(st.epoch + 1, cfg.train.epochs + 1):
        t0 = time.time()
        st.train_loss = fit_epoch(cfg, fit, accelerator, epoch, f"fold {k} epoch {epoch}")
        if swa is None or epoch < cfg.train.epochs:
            evaluate(tricks.ema.module if tricks.ema is not None else model, epoch, st.train_loss, t0)
        st.epoch, st.best = epoch, None if best is None else vars(best)
        save_fold_state(paths.fold_state(k), fit, accelerator, gen, st)  # every process: RNG states
    if swa is not None:
        # SWA's averaged model is the fold's model: no best-epoch selection on top of it
        t0 = time.time()
        with accelerator.autocast():
            swa.finalize(fit.loader)
        best = None
        evaluate(swa.module, "swa", st.train_loss, t0)
    if best is None:
        raise DataError(f"fold {k}: the validation {cfg.metric} was NaN in every epoch; check the targets of "
                        f"that fold (e.g. a single class makes AUC undefined)")
    if accelerator.is_main_process:
        # the SWA evaluation is plotted at the last epoch (it averages the weights up to there)
        plot = pd.DataFrame([{**r, "epoch": cfg.train.epochs if r["epoch"] == "swa" else r["epoch"]} for r in rows])
        save_loss_plot(paths.loss_plot(k), plot, k, cfg.metric)
        # float64 like oof_preds.csv: its shortest repr reads back bit-exactly when a resumed run skips the fold
        write_csv(paths.fold_oof(k), preds_frame(train_df[cfg.data.id_col].iloc[va], cfg.data.id_col,
                                                 best.preds.astype(np.float64), spec))
        mark_done(paths, k, best.score, best.best_epoch, rows)
    accelerator.free_memory()
    return best


def run(exp: str | None, overrides: list[str], resume: bool = False) -> dict:
    cfg = load(exp, overrides)
    if cfg.train.full_fit:
        if resume:
            raise ConfigError("RESUME=1 applies to k-fold runs; rerun the full fit (train.full_fit=true) instead")
        from .fullfit import run_full_fit
        return run_full_fit(cfg)
    return train_experiment(cfg, resume=resume)


def data_files(cfg: Config) -> list:
    return [data_path(cfg, f) for f in (cfg.data.train_file, cfg.data.test_file, cfg.data.sample_submission_file)]


def train_experiment(cfg: Config, folds_df: pd.DataFrame | None = None,
                     extra: dict[int, ExtraRows] | None = None, before_training=None, resume: bool = False) -> dict:
    """K-fold training of cfg. folds_df: the folds to use (default: the data set's shared folds file);
    extra: rows added to fold k's training part (pseudo-labels); before_training(paths): writes more
    files into the fresh run folder (it runs on the main process after the folder is prepared);
    resume: continue the interrupted run in outputs/<exp>/ (resume.py)."""
    paths = RunPaths(cfg)
    accelerator = make_accelerator(cfg)
    if not resume and paths.dir.exists() and any(paths.dir.iterdir()) and not cfg.overwrite:
        prepare_run_dir(paths, overwrite=False)  # raises with the message, before any work
    check_trackers(cfg)
    train_df, test_df, spec = load_all(cfg)
    mod = get_modality(cfg)
    id_col = cfg.data.id_col
    y_fit = spec.encode(train_df, id_col, cfg.data.train_file, scaled=True)
    # Build the model and every trick once before anything is written: unreachable weights, a bad
    # adv.param_pattern or loss for this problem fail here, not after the run folder exists.
    build_tricks(cfg, spec, mod.build_model(spec.n_outputs, cfg.model.pretrained), y_fit)
    hashes = data_fingerprint(data_files(cfg))
    if accelerator.is_main_process:  # the shared folds file is written once, by one process
        folds = folds_df if folds_df is not None else load_or_make_folds(cfg, train_df, spec)
    accelerator.wait_for_everyone()  # every process has checked the inputs before anything is written
    if not accelerator.is_main_process:
        folds = folds_df if folds_df is not None else load_or_make_folds(cfg, train_df, spec)
    if resume:
        check_resumable(cfg, paths, folds, hashes)
    if accelerator.is_main_process:
        if resume:
            left = clear_partial_saves(paths.dir)
            note_resume(paths, argv=sys.argv, partial_saves_removed=[str(p) for p in left])
        else:
            prepare_run_dir(paths, cfg.overwrite)
            write_text(paths.config, dump(cfg))
            start_record(paths, data_files=data_files(cfg))
            spec.save(paths.labels)
            write_csv(paths.folds, folds)
            mod.save_assets(paths.backbone)
            if before_training is not None:
                before_training(paths)
    accelerator.wait_for_everyone()
    log = get_logger(paths.log if accelerator.is_main_process else None, accelerator.is_main_process)
    log.info(f"experiment {cfg.exp}: {cfg.task}/{cfg.problem}, {len(train_df)} train rows, model {cfg.model.name}, "
             f"metric {cfg.metric}, device {accelerator.device} x {accelerator.num_processes}"
             f"{'  (resumed)' if resume else ''}")
    trackers = open_trackers(cfg, cfg.exp, accelerator.is_main_process)
    trackers.log_params(flatten(to_dict(cfg)))
    try:
        result = run_folds(cfg, train_df, y_fit, spec, folds, mod, paths, accelerator, log, extra, resume, trackers)
    except BaseException as e:
        if accelerator.is_main_process:
            finish_record(paths, status=f"failed: {type(e).__name__}: {e}"[:500])
        trackers.close("FAILED")
        raise
    if accelerator.is_main_process:
        finish_record(paths, status="finished", cv=result["cv"])
    trackers.log_metrics({"cv": result["cv"]}, step=cfg.train.epochs)
    trackers.close()
    return result


def run_folds(cfg: Config, train_df, y_fit, spec: TargetSpec, folds, mod, paths: RunPaths, accelerator, log,
              extra, resume: bool, trackers: Trackers) -> dict:
    id_col = cfg.data.id_col
    y_true = spec.encode(train_df, id_col, cfg.data.train_file)
    fold_ids = folds["fold"].to_numpy()
    oof = np.full((len(train_df), spec.n_outputs), np.nan, dtype=np.float64)
    fold_list = cfg.train.folds or list(range(cfg.train.n_folds))
    history: list[dict] = []
    scores, best_epochs = [], []
    t0 = time.time()
    for k in fold_list:
        if resume and paths.fold_done(k).is_file():
            done, preds = read_done(paths, k, id_col, train_df[id_col][fold_ids == k])
            res = FoldResult(preds, done["score"], done["best_epoch"])
            history.extend(done["rows"])
            if accelerator.is_main_process:
                paths.fold_state(k).unlink(missing_ok=True)  # killed between the marker and this removal
            log.info(f"fold {k}: finished before the interruption, skipped")
        else:
            res = fit_fold(cfg, k, train_df, y_fit, y_true, fold_ids, mod, spec, paths, accelerator, log, history,
                           extra=(extra or {}).get(k), resume=resume, trackers=trackers)
        oof[fold_ids == k] = res.preds
        scores.append(res.score)
        best_epochs.append(res.best_epoch)
        log.info(f"fold {k}: best {cfg.metric} {res.score:.5f} at epoch {res.best_epoch}")

    covered = np.isin(fold_ids, fold_list)
    cv = score(cfg.metric, cfg.problem, y_true[covered], oof[covered])
    result = {"metric": cfg.metric, "cv": cv, "folds": scores, "folds_run": list(fold_list),
              "greater_is_better": METRICS[cfg.metric].greater_is_better, "n_folds": cfg.train.n_folds,
              "best_epochs": best_epochs, "wall_seconds": round(time.time() - t0, 1)}
    if accelerator.is_main_process:
        write_csv(paths.oof, preds_frame(train_df[id_col], id_col, oof, spec))
        write_json(paths.cv, result)
    log.info(f"CV {cfg.metric}: {cv:.5f}  folds {[round(s, 5) for s in scores]}  -> {paths.cv}")
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    resume = "--resume" in argv  # a flag, not a config key: the saved config of a run never says "resumed"
    run_stage(lambda exp, overrides: run(exp, overrides, resume), [a for a in argv if a != "--resume"])


if __name__ == "__main__":
    main()
