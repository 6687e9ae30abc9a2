"""Weight averaging: EMA (ema.*) and SWA (swa.*); validation, checkpoints and predictions use the average.

When it helps: noisy training (small batches, high lr, few samples) and last-epoch variance, where
the weights wander around a wide optimum and their average generalises better than any one point.
EMA is nearly free (one foreach lerp per update, one extra copy of the weights); SWA costs one extra
copy and one pass over the training data at the end to recompute BatchNorm statistics.

* EMA (timm's ModelEmaV3): update(model) once per optimiser step; every ema.every-th call averages,
  ema_t = decay * ema_(t-1) + (1 - decay) * weights_t over parameters AND buffers (BatchNorm stats
  included, so no recomputation). ema.decay is per update: the memory is about every / (1 - decay)
  optimiser steps. A decay too high for the run (0.999 over 500 steps) makes the average lag the
  model: it still holds mostly the initial weights. ema.warmup fixes short runs: update t uses
  min(decay, 1 - (1 + (t - 1)) ** -2/3) (the first update copies the model), and the update counter is
  in state_dict() so a resumed run does not restart the ramp. Without warmup the decay is constant from
  the first update (the initial weights weigh decay ** t).
* SWA (torch.optim.swa_utils.AveragedModel): the plain mean of the weights at the end of each epoch
  from swa.start_epoch on (0 = the last quarter of train.epochs, at least one epoch). With swa.lr > 0
  SWALR holds that constant lr, for every param group (head_lr / llrd ratios are not kept), from the
  first averaged epoch: the caller must not step its own scheduler in those epochs
  (`swa.in_swa(epoch) and swa.lr > 0`). Build the SWA after the lr scheduler, since a scheduler
  created later resets the lr. Buffers are not averaged: BatchNorm running stats of the averaged
  weights were never observed, so finalize(train_loader) must run before using swa.module (else
  BatchNorm models predict garbage); models without BatchNorm (transformers) need no pass.
  Useless when the run is too short to average several different points.

Both copy the model where it is: build them after the model is on its device. A DDP / DataParallel
/ torch.compile wrapper is unwrapped (.module / ._orig_mod), so wrapped or raw models both work.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel

from ...core.schema import Config
from ..checkpoints import load_trained_state, trained_state


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers (nested ones too)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class EMA:
    """Exponential moving average of the weights; update(model) once per optimiser step."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True, every: int = 1):
        if every < 1:
            raise ValueError(f"EMA every must be >= 1, got {every}")
        self.ema = ModelEmaV3(unwrap(model), decay=decay, use_warmup=warmup)
        self.ema.module.requires_grad_(False)
        self.warmup, self.every = warmup, every
        self.calls = 0    # optimiser steps seen
        self.updates = 0  # averaging updates made (drives the warmup)

    @property
    def module(self) -> nn.Module:
        """The averaged model (eval mode)."""
        return self.ema.module

    def update(self, model: nn.Module) -> None:
        self.calls += 1
        if self.calls % self.every:
            return
        self.updates += 1
        # step=None: constant decay; step=t: timm's warmup decay for the t-th update
        self.ema.update(unwrap(model), step=self.updates if self.warmup else None)

    def state_dict(self) -> dict:
        return {"module": trained_state(self.ema.module), "calls": self.calls, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        load_trained_state(self.ema.module, state["module"])
        self.calls, self.updates = int(state["calls"]), int(state["updates"])


class SWA:
    """Mean of the epoch-end weights from start_epoch on; constant lr `lr` (> 0) in those epochs."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, start_epoch: int = 0,
                 epochs: int = 1, lr: float = 0.0):
        self.start = start_epoch if start_epoch > 0 else max(1, epochs - max(1, epochs // 4) + 1)
        self.epochs, self.lr, self.optimizer = epochs, lr, optimizer
        if start_epoch < 0 or self.start > epochs:
            raise ValueError(f"swa.start_epoch must be in 0..{epochs} (train.epochs), got {start_epoch}")
        if lr > 0 and optimizer is None:
            raise ValueError("SWA with a constant lr (swa.lr > 0) needs the optimizer")
        self.averaged = AveragedModel(unwrap(model))
        self.averaged.requires_grad_(False)
        self.scheduler: SWALR | None = None
        if self.start == 1:
            self._hold_lr()  # the first epoch already runs at the SWA lr

    @property
    def module(self) -> nn.Module:
        """The averaged model; call finalize() first if it has BatchNorm."""
        return self.averaged.module

    def in_swa(self, epoch: int) -> bool:
        """Epoch (1-based) is averaged; with lr > 0 the regular scheduler must not step in it."""
        return epoch >= self.start

    def _hold_lr(self) -> None:
        if self.lr <= 0:
            return
        if self.scheduler is None:  # anneal_epochs=0: sets every group's lr to `lr` right away
            self.scheduler = SWALR(self.optimizer, swa_lr=self.lr, anneal_epochs=0)
        else:
            self.scheduler.step()

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        if self.in_swa(epoch):
            self.averaged.update_parameters(unwrap(model))
        if self.in_swa(epoch + 1) and epoch < self.epochs:
            self._hold_lr()  # the lr of the next epoch

    def state_dict(self) -> dict:
        """The average so far (n_averaged included) and the constant-lr scheduler, for resuming a run."""
        return {"averaged": trained_state(self.averaged),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        load_trained_state(self.averaged, state["averaged"])
        if state["scheduler"] is not None:
            if self.scheduler is None:
                self.scheduler = SWALR(self.optimizer, swa_lr=self.lr, anneal_epochs=0)
            self.scheduler.load_state_dict(state["scheduler"])

    @torch.no_grad()
    def finalize(self, loader: Iterable[dict], device: torch.device | str | None = None,
                 forward: Callable[[nn.Module, dict], Any] | None = None) -> None:
        """Recompute BatchNorm statistics of the averaged weights: one pass over `loader` in train mode.

        torch.optim.swa_utils.update_bn, for dict batches: running stats reset, momentum=None (a
        cumulative average over the batches), then the module is left in eval mode. Tensors of a
        batch move to `device` if given; `forward(module, batch)` defaults to module(batch) (pass
        one that adds autocast if training used it).
        """
        if int(self.averaged.n_averaged) == 0:
            raise RuntimeError(f"SWA averaged no epoch (start_epoch {self.start}); nothing to finalize")
        module = self.module
        momenta = {m: m.momentum for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        if momenta:
            for bn in momenta:
                bn.reset_running_stats()
                bn.momentum = None
            module.train()
            for batch in loader:
                if device is not None:
                    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                forward(module, batch) if forward is not None else module(batch)
            for bn, momentum in momenta.items():
                bn.momentum = momentum
        module.eval()


def build_averagers(cfg: Config, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> tuple[EMA | None, SWA | None]:
    """(EMA or None, SWA or None) from cfg.ema / cfg.swa; the optimizer is needed for swa.lr > 0."""
    ema = EMA(model, cfg.ema.decay, cfg.ema.warmup, cfg.ema.every) if cfg.ema.enabled else None
    swa = (SWA(model, optimizer, cfg.swa.start_epoch, cfg.train.epochs, cfg.swa.lr)
           if cfg.swa.enabled else None)
    return ema, swa
