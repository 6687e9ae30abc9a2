"""One training epoch and one inference pass; shared by train, predict and later stages.

Accelerate handles device placement, mixed precision, gradient accumulation and DDP, so the same
loop runs on a laptop CPU and on several GPUs (`accelerate launch` / make train NPROC=n).
"""
from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from .targets import TargetSpec


def train_epoch(model, loader, optimizer, scheduler, accelerator: Accelerator, spec: TargetSpec,
                max_grad_norm: float = 0.0, desc: str = "train", progress: bool = True) -> float:
    model.train()
    total = torch.zeros((), device=accelerator.device)
    count = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_main_process))
    for batch in bar:
        with accelerator.accumulate(model):
            logits = model(batch)
            loss = spec.loss(logits, batch["target"])
            accelerator.backward(loss)
            if max_grad_norm > 0 and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
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
