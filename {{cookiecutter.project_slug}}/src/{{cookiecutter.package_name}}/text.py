"""Text modality: transformers AutoModel backbone + pooling head, AutoTokenizer, dynamic padding.

model.name is a hub id or a local directory (offline notebooks: a folder with config, weights and
tokenizer). Several data.text_cols are joined with the tokenizer's separator token. The tokenizer and
backbone config are copied into outputs/<exp>/backbone/, so inference needs nothing but the run folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import AutoConfig, AutoModel, AutoTokenizer

from .cli import DataError
from .config import Config, ConfigError
from .targets import _lines


def join_texts(df: pd.DataFrame, cols: list[str], sep: str) -> list[str]:
    parts = [df[c].fillna("").astype(str).str.strip() for c in cols]
    if len(parts) == 1:
        return parts[0].tolist()
    return [f" {sep} ".join(p for p in row if p) for row in zip(*parts)]


class TextDataset(Dataset):
    def __init__(self, encodings: list[dict], targets: np.ndarray | None):
        self.encodings, self.targets = encodings, targets

    def __len__(self) -> int:
        return len(self.encodings)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.encodings[i])
        if self.targets is not None:
            item["target"] = self.targets[i]
        return item


class Collator:
    """Pads each batch to its own longest sequence (dynamic padding)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict]) -> dict:
        targets = [it.pop("target") for it in items] if "target" in items[0] else None
        batch = dict(self.tokenizer.pad(items, return_tensors="pt"))
        if targets is not None:
            batch["target"] = torch.as_tensor(np.stack(targets))
        return batch


class TextModel(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module, n_outputs: int, pooling: str, drop_rate: float):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = torch.nn.Dropout(drop_rate)
        self.head = torch.nn.Linear(backbone.config.hidden_size, n_outputs)

    def forward(self, batch: dict) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.backbone(**inputs).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)
        return self.head(self.dropout(pooled))


class Modality:
    def __init__(self, cfg: Config, assets_dir: Path | None = None):
        self.cfg = cfg
        self.source = str(assets_dir) if assets_dir is not None else cfg.model.name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        except Exception as e:  # noqa: BLE001 - unknown id, no network, broken folder: all mean "fix model.name"
            raise ConfigError(f"config key 'model.name': cannot load a tokenizer from {self.source!r} "
                              f"({type(e).__name__}: {e}); offline, point it at a local model directory") from None
        self.sep = self.tokenizer.sep_token or self.tokenizer.eos_token or "\n"

    def texts(self, df: pd.DataFrame) -> list[str]:
        return join_texts(df, self.cfg.data.text_cols, self.sep)

    def check_inputs(self, df: pd.DataFrame, file: str) -> None:
        empty = np.array([not t.strip() for t in self.texts(df)])
        if empty.any():
            raise DataError(f"{file} columns {self.cfg.data.text_cols} (data.text_cols) are empty at "
                            f"{_lines(df, empty, self.cfg.data.id_col)}; fill or drop those rows")

    def save_assets(self, out_dir: Path) -> None:
        self.tokenizer.save_pretrained(out_dir)
        AutoConfig.from_pretrained(self.source).save_pretrained(out_dir)

    def encode(self, df: pd.DataFrame) -> list[dict]:
        enc = self.tokenizer(self.texts(df), truncation=True, max_length=self.cfg.data.max_len)
        keys = list(enc.keys())
        return [{k: enc[k][i] for k in keys} for i in range(len(df))]

    def loader(self, df: pd.DataFrame, targets: np.ndarray | None, train: bool, batch_size: int,
               generator: torch.Generator | None = None) -> DataLoader:
        ds = TextDataset(self.encode(df), targets)
        # Tokenised up front in the main process, so workers would only add start-up cost.
        return DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train and len(ds) > batch_size,
                          collate_fn=Collator(self.tokenizer), num_workers=0, generator=generator)

    def build_model(self, n_outputs: int, pretrained: bool) -> torch.nn.Module:
        m = self.cfg.model
        try:
            if pretrained:
                backbone = AutoModel.from_pretrained(self.source)
            else:
                backbone = AutoModel.from_config(AutoConfig.from_pretrained(self.source))
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"config key 'model.name': cannot load a model from {self.source!r} "
                              f"({type(e).__name__}: {e})") from None
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # unused by our pooling head; DDP refuses parameters that get no gradient
        return TextModel(backbone, n_outputs, m.pooling, m.drop_rate)
