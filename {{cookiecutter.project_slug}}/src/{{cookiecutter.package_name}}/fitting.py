"""One model's training state and epoch, shared by k-fold training, full fits, pseudo-label runs and sanity.

Not a stage: train.py (k-fold), fullfit.py and sanity.py build a `Fit` with prepare_fit and run
fit_epoch; make_accelerator is the one place that turns train.device / precision / accum_steps /
deterministic into an Accelerator.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator

from .config import Config, ConfigError
from .cli import TrainingError
from .loop import NonFiniteLoss, Tricks, train_epoch
from .optim import build_optimizer, build_scheduler, freeze_layers, set_backbone_trainable
from .targets import TargetSpec
from .tricks.adversarial import build_adversary
from .tricks.averaging import build_averagers
from .tricks.losses import build_loss


def configure_determinism(on: bool) -> None:
    """train.deterministic: deterministic GPU kernels (cuBLAS workspace, cuDNN without autotuning), slower.
    CPU runs with a fixed seed are already bit-exact; an op with no deterministic GPU kernel then raises."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def make_accelerator(cfg: Config) -> Accelerator:
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is cuda but no GPU is visible; use auto or cpu")
    on_cpu = cfg.train.device == "cpu" or not torch.cuda.is_available()
    if cfg.train.precision == "fp16" and on_cpu:
        raise ConfigError("config key 'train.precision' fp16 needs a GPU; use bf16 or fp32 on CPU")
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.train.precision]
    configure_determinism(cfg.train.deterministic)
    # cpu=True also when no GPU is visible: only then does Accelerate run torchrun's ranks as gloo DDP
    return Accelerator(cpu=on_cpu, mixed_precision=precision,
                       gradient_accumulation_steps=cfg.train.accum_steps)


@dataclass
class ExtraRows:
    """Rows added to one fold's training part only (pseudo-labels): inputs, encoded targets, loss weights."""
    df: pd.DataFrame
    y: np.ndarray
    weight: float


def build_tricks(cfg: Config, spec: TargetSpec, model, fit_targets: np.ndarray) -> Tricks:
    mixer = None
    if cfg.task == "image":  # mixing.py exists in image projects only
        from .tricks.mixing import build_mixer
        mixer = build_mixer(cfg, spec)
    return Tricks(loss_fn=build_loss(cfg, spec, fit_targets), problem=cfg.problem, mixer=mixer,
                  adversary=build_adversary(cfg, model), rdrop_alpha=cfg.rdrop.alpha)


def training_rows(train_df, y_fit, tr, extra: ExtraRows | None, smoothing: float = 0.0):
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
    extra: tuple                  # other loaders, prepared alongside


def prepare_fit(cfg: Config, mod, spec: TargetSpec, accelerator: Accelerator, loader, class_targets,
                *more_loaders) -> Fit:
    model = mod.build_model(spec.n_outputs, cfg.model.pretrained)
    freeze_layers(model, cfg.train.freeze_layers)
    if cfg.task == "image" and cfg.train.channels_last and accelerator.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    tricks = build_tricks(cfg, spec, model, class_targets)  # balanced class weights from the real rows
    optimizer = build_optimizer(model, cfg)
    steps = math.ceil(len(loader) / cfg.train.accum_steps) * cfg.train.epochs
    scheduler = build_scheduler(optimizer, cfg, steps)
    raw = model
    model, optimizer, loader, scheduler, *more = accelerator.prepare(model, optimizer, loader, scheduler,
                                                                     *more_loaders)
    tricks.ema, swa = build_averagers(cfg, raw, optimizer)  # after prepare: the copies live on the device
    if cfg.train.compile:
        model = torch.compile(model)
    return Fit(model, raw, optimizer, scheduler, loader, tricks, swa, tuple(more))


def fit_epoch(cfg: Config, fit: Fit, accelerator: Accelerator, epoch: int, desc: str) -> float:
    """One epoch of training with the freezing schedule and SWA's epoch-end update; the train loss.
    desc ("fold 0 epoch 2", "seed 1 epoch 2") also starts the message of a non-finite loss."""
    if cfg.train.freeze_epochs:
        set_backbone_trainable(fit.raw, epoch > cfg.train.freeze_epochs, cfg.train.freeze_layers)
    in_swa = fit.swa is not None and fit.swa.in_swa(epoch)
    try:
        loss = train_epoch(fit.model, fit.loader, fit.optimizer, fit.scheduler, accelerator, fit.tricks, epoch,
                           fit.raw, cfg.train.max_grad_norm, step_scheduler=not (in_swa and cfg.swa.lr > 0),
                           desc=desc, progress=cfg.train.progress, max_skipped_steps=cfg.train.max_skipped_steps)
    except NonFiniteLoss as e:
        raise TrainingError(f"{desc} step {e.step}: {e.what}; stopped before that step reached the weights. Lower "
                            f"train.lr, set train.max_grad_norm (e.g. 1.0), use fp32 or bf16 instead of fp16, or "
                            f"check the inputs of that batch") from None
    if fit.swa is not None:
        fit.swa.on_epoch_end(fit.raw, epoch)
    return loss
