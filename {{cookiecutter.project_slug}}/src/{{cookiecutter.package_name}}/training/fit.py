"""One model's training state and epoch, shared by k-fold training, full fits, pseudo-label runs, sanity
and MLM pretraining.

kfold.py, fullfit.py and the sanity stage build a `Fit` with prepare_fit and run fit_epoch; pretrain builds
its Fit from its own model and batches and runs the same fit_epoch. final_model says which weights a fit
ends with (SWA's average, else the EMA, else the trained model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator

from ..core.errors import TrainingError
from ..core.labels import LabelMap
from ..core.schema import Config
from .loop import NonFiniteLoss, Tricks, train_epoch
from .optim import build_optimizer, build_scheduler, freeze_layers, set_backbone_trainable
from .setup import sync_batchnorm
from .tricks.adversarial import build_adversary
from .tricks.averaging import build_averagers
from .tricks.losses import build_loss


@dataclass
class PseudoRows:
    """Rows added to one fold's training part only (pseudo-labels): inputs, encoded targets, loss weight."""
    df: pd.DataFrame
    y: np.ndarray
    weight: float


def build_tricks(cfg: Config, label_map: LabelMap, model, fit_targets: np.ndarray) -> Tricks:
    mixer = None
    if cfg.task == "image":  # mixing.py exists in image projects only
        from .tricks.mixing import build_mixer
        mixer = build_mixer(cfg, label_map)
    return Tricks(loss_fn=build_loss(cfg, label_map, fit_targets), problem=cfg.problem, mixer=mixer,
                  adversary=build_adversary(cfg, model), rdrop_alpha=cfg.rdrop.alpha)


def training_rows(train_df, y_fit, tr, extra: PseudoRows | None, smoothing: float = 0.0):
    """The fold's training part, plus pseudo rows (never in the validation part) and per-row weights.
    Soft pseudo-labels (N, C) turn the real rows' class indices into (smoothed) one-hot rows."""
    if extra is None:
        return train_df.iloc[tr], y_fit[tr], None
    df = pd.concat([train_df.iloc[tr], extra.df], ignore_index=True)
    real = y_fit[tr]
    if extra.y.ndim == 2 and real.ndim == 1:
        n = extra.y.shape[1]
        real = np.eye(n, dtype=np.float32)[real] * (1 - smoothing) + smoothing / n
    y = np.concatenate([real.astype(extra.y.dtype), extra.y])
    weights = np.concatenate([np.ones(len(tr)), np.full(len(extra.df), extra.weight)]).astype(np.float32)
    return df, y, weights


@dataclass
class Fit:
    """One model's training state, shared by the k-fold and the full-fit runs."""
    model: torch.nn.Module        # prepared (DDP-wrapped, compiled) model
    raw: torch.nn.Module          # the plain module (EMA / SWA / freezing act on it)
    optimizer: Any
    scheduler: Any
    loader: Any
    tricks: Tricks
    swa: Any
    eval_loaders: tuple = ()      # validation loaders, prepared alongside


def prepare_fit(cfg: Config, mod, label_map: LabelMap, accelerator: Accelerator, loader, class_targets,
                *eval_loaders, model: torch.nn.Module | None = None) -> Fit:
    """model: a model built by the caller (sanity switches its dropout off); default: the modality's."""
    if model is None:
        model = mod.build_model(label_map.n_outputs, cfg.model.pretrained)
    freeze_layers(model, cfg.train.freeze_layers)
    model = sync_batchnorm(cfg, model, accelerator.num_processes, accelerator.device)
    if cfg.task == "image" and cfg.train.channels_last and accelerator.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    tricks = build_tricks(cfg, label_map, model, class_targets)  # balanced class weights from the real rows
    optimizer = build_optimizer(model, cfg)
    steps = math.ceil(len(loader) / cfg.train.accum_steps) * cfg.train.epochs
    scheduler = build_scheduler(optimizer, steps, warmup=cfg.train.warmup, schedule=cfg.optim.schedule,
                                min_lr=cfg.train.min_lr)
    raw = model
    model, optimizer, loader, scheduler, *more = accelerator.prepare(model, optimizer, loader, scheduler,
                                                                     *eval_loaders)
    tricks.ema, swa = build_averagers(cfg, raw, optimizer)  # after prepare: the copies live on the device
    if cfg.train.compile:
        model = torch.compile(model)
    return Fit(model, raw, optimizer, scheduler, loader, tricks, swa, tuple(more))


def fit_epoch(cfg: Config, fit: Fit, accelerator: Accelerator, epoch: int, desc: str, max_steps: int = 0,
              on_batch: Callable[[torch.Tensor, bool], bool | None] | None = None, batches=None) -> float:
    """One epoch of training with the freezing schedule and SWA's epoch-end update; the train loss.
    desc ("fold 0 epoch 2", "seed 1 epoch 2") also starts the message of a non-finite loss.
    max_steps / on_batch: see loop.train_epoch (sanity and pretrain count steps, not epochs).
    batches: what the epoch iterates instead of fit.loader (evals.py: the loader, replayed up to a resume point)."""
    if cfg.train.freeze_epochs:
        set_backbone_trainable(fit.raw, epoch > cfg.train.freeze_epochs, cfg.train.freeze_layers)
    in_swa = fit.swa is not None and fit.swa.in_swa(epoch)
    try:
        loss = train_epoch(fit.model, fit.loader if batches is None else batches, fit.optimizer, fit.scheduler,
                           accelerator, fit.tricks, epoch, fit.raw, cfg.train.max_grad_norm, step_scheduler=not (in_swa and cfg.swa.lr > 0),
                           desc=desc, progress=cfg.train.progress, max_skipped_steps=cfg.train.max_skipped_steps,
                           max_steps=max_steps, on_batch=on_batch)
    except NonFiniteLoss as e:
        raise TrainingError(f"{desc} step {e.step}: {e.what}; stopped before that step reached the weights. Lower "
                            f"train.lr, set train.max_grad_norm (e.g. 1.0), use fp32 or bf16 instead of fp16, or "
                            f"check the inputs of that batch") from None
    if fit.swa is not None:
        fit.swa.on_epoch_end(fit.raw, epoch)
    return loss


def final_model(fit: Fit, accelerator: Accelerator) -> torch.nn.Module:
    """The weights a finished fit ends with: SWA's average (after its BatchNorm pass over the training
    loader), else the EMA, else the trained model."""
    if fit.swa is not None:
        with accelerator.autocast():
            fit.swa.finalize(fit.loader)
        return fit.swa.module
    return fit.tricks.ema.module if fit.tricks.ema is not None else fit.model
