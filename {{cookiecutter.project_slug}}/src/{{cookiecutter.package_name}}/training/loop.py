"""One training epoch and one inference pass (with TTA views): the one loop of every stage that trains
(make train, pseudo, full fits, sanity, pretrain) or predicts.

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

from ..core.labels import LabelMap
from ..modality.tta import reduce_views
from .tricks import rdrop


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN / inf loss (or fp16's scaler skipped too many steps in a row)."""

    def __init__(self, epoch: int, step: int, what: str):
        super().__init__(f"epoch {epoch} step {step}: {what}")
        self.epoch, self.step, self.what = epoch, step, what


@dataclass
class Tricks:
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    problem: str
    mixer: Callable[[dict], dict] | None = None
    adversary: Any = None
    ema: Any = None
    rdrop_alpha: float = 0.0

    def loss_of(self, model, batch: dict) -> torch.Tensor:
        """batch["weight"], when present, weighs each row's loss (pseudo-labelled rows)."""
        if self.rdrop_alpha > 0:
            doubled = rdrop.double(batch)
            weight = doubled.get("weight")
            return rdrop.rdrop_loss(model(doubled), doubled["target"], lambda o, t: self.loss_fn(o, t, weight),
                                    self.rdrop_alpha, self.problem)
        return self.loss_fn(model(batch), batch["target"], batch.get("weight"))


def train_epoch(model, loader, optimizer, scheduler, accelerator: Accelerator, tricks: Tricks, epoch: int,
                raw_model=None, max_grad_norm: float = 0.0, step_scheduler: bool = True, desc: str = "train",
                progress: bool = True, max_skipped_steps: int = 20, max_steps: int = 0,
                on_batch: Callable[[torch.Tensor, bool], bool | None] | None = None) -> float:
    """The epoch's mean training loss. A NaN / inf loss raises NonFiniteLoss before the optimiser step, so
    the weights, EMA and last resume point stay finite. Under fp16 loss scaling a non-finite step is the
    scaler's to skip (it lowers the scale); only max_skipped_steps skipped steps in a row raise.
    The scheduler steps once per optimiser step (Accelerate's prepared scheduler or a plain one alike).
    max_steps > 0 ends the epoch after that many optimiser steps; on_batch(loss, stepped) runs after every
    batch (make sanity records each loss, make pretrain counts steps, logs and saves, train.eval_every
    evaluates); when it returns True the epoch ends there (train.patience)."""
    model.train()
    total = torch.zeros((), device=accelerator.device)
    count, skipped, steps = 0, 0, 0
    scaled = accelerator.scaler is not None
    attack = tricks.adversary is not None and tricks.adversary.active(epoch)
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process))
    for step, batch in enumerate(bar, 1):
        if tricks.mixer is not None:
            batch = tricks.mixer(batch)
        with accelerator.accumulate(model):
            loss = tricks.loss_of(model, batch)
            if not scaled and not torch.isfinite(loss.detach()).item():
                raise NonFiniteLoss(epoch, step, f"the training loss is {loss.item()}")
            accelerator.backward(loss)
            if attack:
                tricks.adversary.attack(lambda: tricks.loss_of(model, batch), accelerator.backward)
            if max_grad_norm > 0 and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if scaled and accelerator.sync_gradients:
                skipped = skipped + 1 if accelerator.optimizer_step_was_skipped else 0
                if skipped >= max_skipped_steps:
                    raise NonFiniteLoss(epoch, step, f"{skipped} optimiser steps in a row were skipped by the fp16 "
                                                     f"loss scaler (inf/NaN gradients; train.max_skipped_steps)")
            if step_scheduler and accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        stepped = accelerator.sync_gradients
        if tricks.ema is not None and stepped:  # once per optimiser step
            tricks.ema.update(raw_model if raw_model is not None else model)
        n = len(batch["target"])
        # fp16: a skipped step's non-finite loss would make the epoch's mean meaningless
        total += (torch.nan_to_num(loss.detach(), nan=0.0, posinf=0.0, neginf=0.0) if scaled else loss.detach()) * n
        count += n
        stop = on_batch is not None and on_batch(loss.detach(), stepped)
        steps += stepped
        if stop or (max_steps and steps >= max_steps):
            break
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(torch.tensor(count, device=accelerator.device), reduction="sum").item()
    return float(total.item() / max(count, 1))


@torch.no_grad()
def infer(model, loader, accelerator: Accelerator, label_map: LabelMap, desc: str = "infer", progress: bool = True,
          views: Callable[[Any, dict], torch.Tensor] | None = None,
          reduce: str = "mean") -> tuple[np.ndarray, float | None]:
    """Predictions in the CSV scale (probabilities or values), one row per row of the loader's data, in the
    data's order, and the mean loss when the batches carry targets.

    views: image TTA, a callable (model, batch) -> logits (B, V, C) that runs V views of the batch
        (image.ImageViews); the views are activated one by one and combined by tta.reduce_views(reduce).
    The loader's dataset may hold `slots` (V, N): the item that is view v of row i (modality/text.py: items sorted
    by length, truncation views, a short text's views one item). Predictions are read back through it,
    so a sorted loader still returns rows in the data's order, also under DDP (the sampler is
    sequential and gather_for_metrics drops the duplicates padding the last batch).
    The loss is the first view's.
    """
    model.eval()
    preds, losses, counts = [], [], 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process))
    for batch in bar:
        with accelerator.autocast():
            logits = views(model, batch) if views is not None else model(batch).unsqueeze(1)
        if "target" in batch:
            # gather before the loss so DDP's padded duplicate rows are dropped from both
            logits, target = accelerator.gather_for_metrics((logits, batch["target"]))
            losses.append(label_map.loss(logits[:, 0], target).item() * len(target))
            counts += len(target)
        else:
            logits = accelerator.gather_for_metrics(logits)
        preds.append(label_map.activate(logits).cpu().numpy())
    items = np.concatenate(preds)  # (items, V, C)
    slots = getattr(getattr(loader, "dataset", None), "slots", None)
    probs = items.transpose(1, 0, 2) if slots is None else items[:, 0][slots]
    return reduce_views(probs, reduce, label_map.problem), (sum(losses) / counts if counts else None)
