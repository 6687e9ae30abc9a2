"""The masked-LM side of make pretrain: tokenizer and model from model.name (hub id or local folder, checked
before any work), the wrapper that lets the shared training loop call it, held-out loss, and the saved model."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM

from ..core.errors import ConfigError
from ..core.schema import Config
from ..modality import text


class MaskedLMLoss(torch.nn.Module):
    """model(batch) -> the masked-LM loss, so training.loop.train_epoch trains it like a classifier: the
    batch's "target" holds the MLM labels (-100 where nothing is masked) and the loss function passes
    the model's output through."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.mlm = mlm

    def forward(self, batch: dict) -> torch.Tensor:
        return self.mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        labels=batch["target"]).loss


def passthrough(loss: torch.Tensor, target, weight) -> torch.Tensor:
    return loss


def load_tokenizer(cfg: Config):
    """The text modality's tokenizer of model.name, checked for what masked-LM pretraining needs."""
    name = cfg.model.name
    tokenizer = text.load_tokenizer(name)
    if tokenizer.mask_token is None:
        raise ConfigError(f"config key 'model.name': the tokenizer of {name!r} has no mask token, so it cannot do "
                          f"masked-LM pretraining; use an MLM-capable checkpoint (BERT, RoBERTa, DeBERTa, ...)")
    if cfg.pretrain.whole_word and not tokenizer.is_fast:
        raise ConfigError(f"config key 'pretrain.whole_word' needs a fast tokenizer (character offsets); "
                          f"{name!r} has a slow one")
    return tokenizer


def load_model(cfg: Config) -> tuple[torch.nn.Module, list[str]]:
    """The masked-LM model and warnings to log (a head that starts random)."""
    name = cfg.model.name
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"config key 'model.name': cannot load {name!r} as a masked-LM model "
                          f"(AutoModelForMaskedLM: {type(e).__name__}: {e}); pretraining needs an encoder of a "
                          f"masked-LM family (BERT, RoBERTa, DeBERTa, ...)") from None
    notes = []
    head = sorted(k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + "."))
    if "deberta-v3" in name.lower():
        notes.append("DeBERTa-v3 was pretrained with replaced-token detection, not masked-LM: its MLM head starts "
                     "random, so perplexity_before is huge and the first steps mostly train the head")
    elif head:
        notes.append(f"the checkpoint has no masked-LM head ({len(head)} tensors, e.g. {head[0]}): it starts "
                     f"random, so perplexity_before is near the vocabulary size")
    # one forward of a full-length block: a pretrain.max_len beyond the model's positions fails here, not later
    try:
        with torch.no_grad():
            model.eval()(input_ids=torch.zeros((1, cfg.pretrain.max_len), dtype=torch.long))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"config key 'pretrain.max_len' {cfg.pretrain.max_len} does not fit {name!r} "
                          f"({type(e).__name__}: {e}); lower it") from None
    return model, notes


@torch.no_grad()
def evaluate(model, batches: list[dict], accelerator) -> float:
    """Mean masked-LM loss per masked token over the held-out batches (each process takes its share).
    `model` is the unwrapped module: a DDP forward syncs buffers, which would hang a rank with fewer batches."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in batches[accelerator.process_index::accelerator.num_processes]:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        n = (batch["labels"] != -100).sum()
        with accelerator.autocast():
            loss = model(**batch).loss
        total += torch.stack([loss.double() * n, n.double()])
    total = accelerator.reduce(total, reduction="sum")
    model.train()
    return float(total[0] / total[1])


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")


def save_model(raw, tokenizer, out: Path) -> None:
    """The full masked-LM model and tokenizer, written beside the target and then swapped in, so a killed
    save never leaves a half-written model/."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    raw.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
