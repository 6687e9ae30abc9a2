"""Checkpoints: a fold's best.pt, a full fit's seed models, and the resume points of k-fold training
(fold<k>/last.pt) and MLM pretraining (pretrain_state.pt). One format for RNG states and atomic saves.

Resume a k-fold run after a crash or kill -9, ending with the same OOF, CV and submission.

    make train EXP=exp001 RESUME=1          # python -m <package>.train --exp exp001 --resume

At the end of every epoch (train.eval_every > 0: at every evaluation, see evals.py; train.save_every = N:
every N-th of them) but a fold's last, training writes fold<k>/last.pt atomically (temp file + os.replace,
main process only, in a background thread: saver.py): the model, EMA, SWA, optimiser,
scheduler and loss-scaler states, the best result so far (its validation predictions), the fold's history
rows and every RNG state (python, numpy, torch, CUDA and the training loader's generator; every rank's
under DDP). best.pt of an improved evaluation is written with the next resume point, just before it (or
when the fold ends), so best.pt on disk never comes from an evaluation after the resume point. A finished
fold writes fold<k>/done.json and drops last.pt. A resumed run skips done folds
(their OOF is read back exactly from fold<k>/oof.csv), restarts an interrupted fold from its last finished
epoch or evaluation (the rest is redone with the same batches, augmentations and dropout) and starts the
others fresh. Temp files of a save that was killed are removed and never read.

Everything that shapes the numbers must be unchanged: the config (except the keys in FREE: logging,
inference and later stages), the competition CSVs (sha256 in run.json) and the folds. On CPU a resumed
run is byte-identical to an uninterrupted one; on GPU as exact as the kernels (train.deterministic).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml
from accelerate.utils import gather_object

from ..core.atomic import write_json
from ..core.config import dump, flatten, read_yaml
from ..core.errors import ConfigError
from ..core.rundir import RunPaths
from ..core.schema import Config
from ..core.tables import read_table
from .saver import SAVER, snapshot, write

# Keys a resumed run may change: they do not touch the training numbers.
FREE = ("exp", "overwrite", "train.progress", "train.save_every", "train.num_workers", "track.", "tta.", "infer.",
        "submit.", "eda.", "sanity.", "ensemble.", "report.", "paths.submissions")


@dataclass
class FoldState:
    """Where fold k stands: the last finished epoch, its best result so far, its history rows. With
    train.eval_every (evals.py) a resume point sits at an evaluation inside an epoch: `batches` of epoch
    epoch + 1 are done, `epoch_start` is the loader generator's state when that epoch began and `pre` this
    process's RNG states just before its last batch was requested (the one the loader had already fetched
    the next batch with); `step` counts optimiser steps, `stale` evaluations since the best (train.patience)."""
    epoch: int = 0
    best: dict | None = None    # {"preds", "score", "epoch"}
    rows: list | None = None
    train_loss: float = float("nan")
    step: int = 0
    batches: int = 0
    epoch_start: Any = None
    pre: dict | None = None
    stale: int = 0
    stopped: bool = False
    rng: dict | None = None     # loaded: this process's RNG states at the resume point


def frozen_base_key(key: str) -> bool:
    """A weight of the frozen base under LoRA: peft wraps the backbone as base_model.model and only its lora_
    adapters train. Checkpoints leave these out; loading rebuilds them from the run's backbone/ folder."""
    return ".base_model.model." in f".{key}" and "lora_" not in key


def trained_state(module: torch.nn.Module) -> dict:
    """module.state_dict() without the frozen LoRA base (all of it for a model without adapters)."""
    return {k: v for k, v in module.state_dict().items() if not frozen_base_key(k)}


def load_trained_state(module: torch.nn.Module, state: dict) -> None:
    """load_state_dict that accepts a checkpoint without the frozen LoRA base; any other missing or unexpected
    key fails as load_state_dict(strict=True) would."""
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not frozen_base_key(k)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(module).__name__}: missing keys {missing[:3]}, "
                           f"unexpected keys {result.unexpected_keys[:3]}")


def weights(module: torch.nn.Module, **info) -> dict:
    """What best.pt / seed<s>/model.pt hold: {"model": state dict, **info} (epoch, score, metric or seed);
    under LoRA the adapters, pooling and head only. A snapshot: later steps do not change it."""
    return snapshot({"model": trained_state(module), **info})


def save_weights(path: Path, module: torch.nn.Module, **info) -> None:
    """best.pt / seed<s>/model.pt as weights() holds them, written now: no copy needed."""
    write(path, {"model": trained_state(module), **info})


def capture_rng(generator: torch.Generator | None = None) -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "loader": generator.get_state() if generator is not None else None}


def restore_rng(state: dict, generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None:
        generator.set_state(state["loader"])


def every_rank_rng(accelerator, generator: torch.Generator | None = None) -> list[dict]:
    """Each process's RNG states, gathered on every process (a collective: call it on all of them)."""
    rngs = [capture_rng(generator)]
    return gather_object(rngs) if accelerator.num_processes > 1 else rngs


def training_state(fit, accelerator) -> dict:
    """What any resume point holds besides its own counters: weights, optimiser, schedule, scaler, EMA, SWA."""
    return {"model": trained_state(fit.raw), "optimizer": fit.optimizer.state_dict(),
            "scheduler": fit.scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "ema": fit.tricks.ema.state_dict() if fit.tricks.ema is not None else None,
            "swa": fit.swa.state_dict() if fit.swa is not None else None,
            "world": accelerator.num_processes}


def read_state(path: Path, accelerator) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: numpy and RNG tuples
    if state["world"] != accelerator.num_processes:
        raise ConfigError(f"{path} was written by {state['world']} process(es); resume with NPROC={state['world']}")
    return state


def load_training_state(state: dict, fit, accelerator) -> None:
    """Into a freshly prepared fit, on every process; the weights first, then what refers to them."""
    load_trained_state(fit.raw, state["model"])
    if fit.swa is not None:  # before the optimiser: SWA's lr scheduler rewrites the groups' lr when created
        fit.swa.load_state_dict(state["swa"])
    fit.optimizer.load_state_dict(state["optimizer"])
    fit.scheduler.load_state_dict(state["scheduler"])
    if accelerator.scaler is not None and state["scaler"] is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    if fit.tricks.ema is not None:
        fit.tricks.ema.load_state_dict(state["ema"])


def save_fold_state(path: Path, fit, accelerator, generator: torch.Generator, st: FoldState,
                    best: tuple[Path, dict] | None = None) -> None:
    """The end-of-epoch resume point; the previous one stays valid until os.replace swaps this one in.
    Called on every process: each rank's RNG states are gathered (text batches of different lengths draw
    different amounts of dropout noise per rank), then the main process queues best (best.pt's path and
    weights(), when the fold improved since the last point) and the state for the writer thread (saver.py)."""
    rngs = every_rank_rng(accelerator, generator)
    pres = [st.pre] if st.pre is None or accelerator.num_processes == 1 else gather_object([st.pre])
    if not accelerator.is_main_process:
        return
    state = {"epoch": st.epoch, "best": st.best, "rows": st.rows, "train_loss": st.train_loss,
             "step": st.step, "batches": st.batches, "epoch_start": st.epoch_start, "pre": pres,
             "stale": st.stale, "stopped": st.stopped, **training_state(fit, accelerator), "rng": rngs}
    SAVER.save(*([best] if best is not None else []), (path, snapshot(state)))


def load_fold_state(path: Path, fit, accelerator, generator: torch.Generator) -> FoldState:
    """Load last.pt into a freshly prepared fit (every process reads the same file)."""
    state = read_state(path, accelerator)
    load_training_state(state, fit, accelerator)
    rank = accelerator.process_index
    restore_rng(state["rng"][rank], generator)
    pre = state.get("pre") or [None]
    return FoldState(state["epoch"], state["best"], state["rows"], state["train_loss"], state.get("step", 0),
                     state.get("batches", 0), state.get("epoch_start"), pre[rank] if len(pre) > rank else pre[0],
                     state.get("stale", 0), state.get("stopped", False), state["rng"][rank])


def mark_done(paths: RunPaths, k: int, score: float, best_epoch, rows: list, seed: int | None = None) -> None:
    """The fold's (or fold and seed's) marker, written after its oof.csv and once the writer thread has put
    every queued file on disk; only then is the resume point dropped."""
    SAVER.flush()
    extra = {} if seed is None else {"seed": seed}
    write_json(paths.fold_done(k, seed), {"fold": k, **extra, "score": score, "best_epoch": best_epoch, "rows": rows})
    paths.fold_state(k, seed).unlink(missing_ok=True)


def read_done(paths: RunPaths, k: int, id_col: str, ids: pd.Series, seed: int | None = None
              ) -> tuple[dict, np.ndarray]:
    """A finished fold's marker and its OOF predictions, read back bit-exactly (shortest repr round trip)."""
    done = json.loads(paths.fold_done(k, seed).read_text())
    oof = read_table(paths.fold_oof(k, seed), dtype={id_col: str}, float_precision="round_trip")
    if oof[id_col].tolist() != ids.tolist():
        raise ConfigError(f"{paths.fold_oof(k, seed)} holds other rows than fold {k} of {paths.folds}; "
                          f"the run cannot be resumed: start a new EXP")
    return done, oof.drop(columns=[id_col]).to_numpy(dtype=np.float64)


def clear_partial_saves(run_dir: Path) -> list[Path]:
    """Temp files left by a save that was killed (atomic_path names them .<name>.<random>.tmp)."""
    left = sorted(p for p in run_dir.rglob(".*.tmp") if p.is_file())
    for p in left:
        p.unlink()
    return left


def config_changes(saved: Path, cfg: Config, matters: Callable[[str], bool]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, value now) of every key that `matters` and differs from the run's saved config.yaml;
    compared through YAML, as the run saved it, so 1e-3 == 0.001. The resume check of make train (every key
    but FREE) and of make pretrain (the keys that shape its texts and masks)."""
    old = flatten(read_yaml(saved))
    new = flatten(yaml.safe_load(dump(cfg)))
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if matters(k) and old.get(k) != new.get(k)]


def check_resumable(cfg: Config, paths: RunPaths, folds: pd.DataFrame, data_hashes: dict[str, str]) -> None:
    """Refuse, before any work, a resume that could not end where the interrupted run would have."""
    if not paths.config.is_file():
        raise ConfigError(f"RESUME=1: {paths.dir} holds no run to resume (no config.yaml); start without RESUME=1")
    if paths.cv.is_file():
        raise ConfigError(f"RESUME=1: {paths.dir} is finished (cv.json exists); nothing to resume")
    changed = config_changes(paths.config, cfg, lambda k: not k.startswith(FREE))
    if changed:
        shown = "; ".join(f"'{k}' was {old!r}, now {new!r}" for k, old, new in changed[:5])
        raise ConfigError(f"RESUME=1 with a changed config: {shown}. Resume with the saved values "
                          f"({paths.config}) or start a new EXP")
    if paths.run_record.is_file():
        saved = json.loads(paths.run_record.read_text()).get("data") or {}
        for file, digest in data_hashes.items():
            if file in saved and saved[file] != digest:
                raise ConfigError(f"RESUME=1: {file} changed since the run started (sha256 differs); "
                                  f"start a new EXP for the new data")
    saved_folds = read_table(paths.folds, dtype={cfg.data.id_col: str})
    if not saved_folds.reset_index(drop=True).equals(folds.reset_index(drop=True)):
        raise ConfigError(f"RESUME=1: the folds differ from the run's {paths.folds} (folds file or data.fold_seed "
                          f"changed); start a new EXP")
