"""One training epoch and one inference pass; shared by train, predict and later stages.

Accelerate handles device placement, mixed precision, gradient accumulation and DDP, so the same
loop runs on a laptop CPU and on several GPUs (make train NPROC=n). The tricks enter through one
object, `Tricks`, at fixed points of the step: mix the batch, compute the loss (R-Drop doubles the
batch), backward, adversarial attack, clip, optimiser step, weight averaging.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from .targets import TargetSpec
from .tricks import rdrop


@dataclass
class Tricks:
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    problem: str
    mixer: Callable[[dict], dict] | None = None
    adversary: Any = None
    ema: Any = None
    rdrop_alpha: float = 0.0

    def loss_of(self, model, batch: dict) -> torch.Tensor:
        if self.rdrop_alpha > 0:
            doubled = rdrop.double(batch)
            return rdrop.rdrop_loss(model(doubled), doubled["target"], self.loss_fn, self.rdrop_alpha, self.problem)
        return self.loss_fn(model(batch), batch["target"])


def train_epoch(model, loader, optimizer, scheduler, accelerator: Accelerator, tricks: Tricks, epoch: int,
                raw_model=None, max_grad_norm: float = 0.0, step_scheduler: bool = True, desc: str = "train",
                progress: bool = True) -> float:
    model.train()
    total = torch.zeros((), device=accelerator.device)
    count = 0
    attack = tricks.adversary is not None and tricks.adversary.active(epoch)
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process))
    for batch in bar:
        if tricks.mixer is not None:
            batch = tricks.mixer(batch)
        with accelerator.accumulate(model):
            loss = tricks.loss_of(model, batch)
            accelerator.backward(loss)
            if attack:
                tricks.adversary.attack(lambda: tricks.loss_of(model, batch), accelerator.backward)
            if max_grad_norm > 0 and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if step_scheduler:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if tricks.ema is not None and accelerator.sync_gradients:  # once per optimiser step
            tricks.ema.update(raw_model if raw_model is not None else model)
        n = len(batch["target"])
        total += loss.detach() * n
        count += n
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(torch.tensor(count, device=accelerator.device), reduction="sum").item()
    return float(total.item() / max(count, 1))


@torch.no_grad()
def infer(model, loader, accelerator: Accelerator, spec: TargetSpec, desc: str = "infer",
          progress: bool = True) -> tuple[np.ndarray, float | None]:
    """Predictions in the CSV scale (probabilities or values) in loader order, and mean loss if targets."""
    model.eval()
    preds, losses, counts = [], [], 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process))
    for batch in bar:
        with accelerator.autocast():
            logits = model(batch)
        if "target" in batch:
            # gather before the loss so DDP's padded duplicate rows are dropped from both
            logits, target = accelerator.gather_for_metrics((logits, batch["target"]))
            losses.append(spec.loss(logits, target).item() * len(target))
            counts += len(target)
        else:
            logits = accelerator.gather_for_metrics(logits)
        preds.append(spec.activate(logits).cpu().numpy())
    return np.concatenate(preds), (sum(losses) / counts if counts else None)
