"""Optimiser and learning-rate schedule (stepped once per optimiser step, not per micro-batch).

AdamW with no weight decay on biases and normalisation weights; linear warmup over train.warmup of
the steps, then cosine decay to train.min_lr.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from .config import Config


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, total_steps: int):
    total_steps = max(1, total_steps)
    warmup = int(round(cfg.train.warmup * total_steps))
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup), eta_min=cfg.train.min_lr)
    if warmup == 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
