"""Text modality: AutoTokenizer, dynamic padding, TTA views; the model (backbone, pooling, head, LoRA) is built
here from modality/text_model.py and modality/lora.py.

model.name is a hub id or a local directory (offline notebooks: a folder with config, weights and
tokenizer). Several data.text_cols are joined with the tokenizer's separator token. The tokenizer and
backbone config are copied into outputs/<exp>/backbone/, so inference needs nothing but the run folder.

Inference (train=False loaders) sorts the items by token length (infer.sort_by_length), so each batch is
padded to a length close to its own texts'; the dataset's `slots` put the predictions back in row order
(training.loop.infer). Test-time views (tta.views) of a text longer than data.max_len are truncations of it:
identity = the tokenizer's own truncation (as in training), head = the first tokens, tail = the last,
head_tail = the first half and the last half of the token budget. A text that fits has one item for all
its views, so only long texts cost extra.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ..core.errors import ConfigError, DataError, rows_message
from ..core.schema import Config
from .buckets import LengthGroupedBatchSampler
from .lora import add_adapters, merge_adapters
from .text_model import TextModel, enable_grad_checkpointing, reinit_top_layers


def load_tokenizer(source: str):
    """The tokenizer of a hub id or local folder; any failure is a one-line error naming model.name.
    A tokenizer without a pad token (Llama, Mistral, GPT-2...) pads with its eos (else unk) token: padded
    positions are masked out, so which token fills them does not matter. Padding is on the right: with the
    attention mask and (for decoders) positions counted over real tokens, either side gives the same
    outputs, and the right keeps every text's positions those of the text alone for any model."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as e:  # noqa: BLE001 - unknown id, no network, broken folder: all mean "fix model.name"
        raise ConfigError(f"config key 'model.name': cannot load a tokenizer from {source!r} "
                          f"({type(e).__name__}: {e}); offline, point it at a local model directory") from None
    if tokenizer.pad_token is None:
        filler = tokenizer.eos_token or tokenizer.unk_token
        if filler is None:
            raise ConfigError(f"config key 'model.name': the tokenizer of {source!r} has no pad, eos or unk token "
                              f"to pad batches with; add a pad_token to its tokenizer_config.json")
        tokenizer.pad_token = filler
    tokenizer.padding_side = "right"
    return tokenizer


def separator(tokenizer) -> str:
    """What joins several text columns (and, in make pretrain, nothing else): [SEP], </s> or a newline."""
    return tokenizer.sep_token or tokenizer.eos_token or "\n"


def join_texts(df: pd.DataFrame, cols: list[str], sep: str) -> list[str]:
    parts = [df[c].fillna("").astype(str).str.strip() for c in cols]
    if len(parts) == 1:
        return parts[0].tolist()
    return [f" {sep} ".join(p for p in row if p) for row in zip(*parts)]


VIEWS = ("identity", "head", "tail", "head_tail")


class TextDataset(Dataset):
    """Item i is an encoding of data row rows[i] (rows None: row i). slots (V, N), when set, names the item
    that is view v of row i; training.loop.infer reads predictions back through it."""

    def __init__(self, encodings: list[dict], targets: np.ndarray | None, weights: np.ndarray | None = None,
                 rows: np.ndarray | None = None, slots: np.ndarray | None = None):
        self.encodings, self.targets, self.weights = encodings, targets, weights
        self.rows, self.slots = rows, slots

    def __len__(self) -> int:
        return len(self.encodings)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.encodings[i])
        row = i if self.rows is None else self.rows[i]
        if self.targets is not None:
            item["target"] = self.targets[row]
        if self.weights is not None:
            item["weight"] = np.float32(self.weights[row])
        return item


class Collator:
    """Pads each batch to its own longest sequence (dynamic padding), or to max_length when given."""

    def __init__(self, tokenizer, max_length: int | None = None):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list[dict]) -> dict:
        extra = {k: [it.pop(k) for it in items] for k in ("target", "weight") if k in items[0]}
        padding = "max_length" if self.max_length else True
        batch = dict(self.tokenizer.pad(items, padding=padding, max_length=self.max_length, return_tensors="pt"))
        for k, values in extra.items():
            batch[k] = torch.as_tensor(np.stack(values))
        return batch


class Modality:
    VIEWS = VIEWS

    def __init__(self, cfg: Config, assets_dir: Path | None = None):
        self.cfg = cfg
        self.source = str(assets_dir) if assets_dir is not None else cfg.model.name
        self.tokenizer = load_tokenizer(self.source)
        self.sep = separator(self.tokenizer)

    def texts(self, df: pd.DataFrame) -> list[str]:
        return join_texts(df, self.cfg.data.text_cols, self.sep)

    def check_inputs(self, df: pd.DataFrame, file: str) -> None:
        empty = np.array([not t.strip() for t in self.texts(df)])
        if empty.any():
            raise DataError(f"{file} columns {self.cfg.data.text_cols} (data.text_cols) are empty or whitespace at "
                            f"{rows_message(df, empty, self.cfg.data.id_col)}; fill them (a train row may be dropped "
                            f"instead; a test row must stay, the submission needs its id)")

    def warm(self, df: pd.DataFrame) -> None:
        """Images only (data.cache); texts are tokenised per loader."""

    def save_assets(self, out_dir: Path) -> None:
        """The tokenizer and model config; with lora.enabled also the frozen base weights, once per run (the
        checkpoints hold only the adapters and the head, inference rebuilds the base from here)."""
        self.tokenizer.save_pretrained(out_dir)
        if self.cfg.lora.enabled:
            load_backbone(self.source, pretrained=True).save_pretrained(out_dir)
        else:
            AutoConfig.from_pretrained(self.source).save_pretrained(out_dir)

    def encode(self, df: pd.DataFrame) -> list[dict]:
        enc = self.tokenizer(self.texts(df), truncation=True, max_length=self.cfg.data.max_len)
        keys = list(enc.keys())
        return [{k: enc[k][i] for k in keys} for i in range(len(df))]

    @staticmethod
    def is_view(view: str) -> bool:
        return view in VIEWS

    def encode_views(self, df: pd.DataFrame, views: list[str]) -> tuple[list[dict], np.ndarray, np.ndarray]:
        """Encodings of every distinct view of every row, the row of each, and slots (V, N): the encoding
        that is view v of row i. Views of a text that fits in max_len are one encoding."""
        base = self.encode(df)
        if all(v == "identity" for v in views):
            return base, np.arange(len(base)), np.tile(np.arange(len(base)), (len(views), 1))
        full = self.tokenizer(self.texts(df), add_special_tokens=False, verbose=False)["input_ids"]
        n_special = self.tokenizer.num_special_tokens_to_add(pair=False)
        items, rows, unsplit = [], [], 0
        slots = np.zeros((len(views), len(base)), dtype=np.int64)
        for i, enc in enumerate(base):
            budget = len(enc["input_ids"]) - n_special  # content tokens the truncation kept
            seen: dict[tuple, int] = {}
            for v, view in enumerate(views):
                e = enc if view == "identity" or len(full[i]) <= budget else self.truncation(enc, full[i], budget, view)
                if e is None:
                    e, unsplit = enc, unsplit + 1
                key = tuple(e["input_ids"])
                if key not in seen:
                    seen[key] = len(items)
                    items.append(e)
                    rows.append(i)
                slots[v, i] = seen[key]
        if unsplit:
            logging.getLogger("run").warning(f"tta.views: {unsplit} long-text view(s) fell back to identity; this "
                                             f"tokenizer's truncation is not a slice of its untruncated tokens")
        return items, np.array(rows), slots

    def truncation(self, enc: dict, ids: list[int], budget: int, view: str) -> dict | None:
        """`enc` (the tokenizer's own truncation, special tokens in place) with its content tokens replaced by
        the view's: the special tokens stay where this tokenizer's template puts them (fast tokenizers in
        transformers 5 have no build_inputs_with_special_tokens). None when the truncated content is not a
        slice of the untruncated tokens (a tokenizer that tokenises differently without special tokens)."""
        if budget < 1:
            return None
        kept = ids[:budget] if self.tokenizer.truncation_side == "right" else ids[len(ids) - budget:]
        seq = list(enc["input_ids"])
        start = next((p for p in range(len(seq) - budget + 1) if seq[p:p + budget] == kept), None)
        if start is None:
            return None
        h = budget // 2
        part = {"head": ids[:budget], "tail": ids[len(ids) - budget:],
                "head_tail": ids[:h] + ids[len(ids) - (budget - h):]}[view]
        return {**enc, "input_ids": seq[:start] + part + seq[start + budget:]}

    def loader(self, df: pd.DataFrame, targets: np.ndarray | None, train: bool, batch_size: int,
               generator: torch.Generator | None = None, weights: np.ndarray | None = None,
               views: list[str] | tuple[str, ...] = ("identity",)) -> DataLoader:
        """weights: per-row loss weights (pseudo-labelled rows), yielded as batch["weight"].
        Training with train.group_by_length: batches of similar token length (buckets.py).
        Inference (train=False): the `views` of each row (tta.views), sorted by token length when
        infer.sort_by_length, padded to data.max_len when infer.pad_to_max_len; training.loop.infer restores
        row order."""
        # Tokenised up front in the main process, so workers would only add start-up cost.
        if train:
            ds = TextDataset(self.encode(df), targets, weights)
            if self.cfg.train.group_by_length:  # batches of similar length (buckets.py)
                sampler = LengthGroupedBatchSampler([len(e["input_ids"]) for e in ds.encodings], batch_size,
                                                    generator, drop_last=len(ds) > batch_size)
                return DataLoader(ds, batch_sampler=sampler, collate_fn=Collator(self.tokenizer), num_workers=0,
                                  generator=generator)
            return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=len(ds) > batch_size,
                              collate_fn=Collator(self.tokenizer), num_workers=0, generator=generator)
        items, rows, slots = self.encode_views(df, list(views))
        if self.cfg.infer.sort_by_length:
            order = np.argsort([-len(e["input_ids"]) for e in items], kind="stable")  # longest first: OOM shows early
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            items, rows, slots = [items[j] for j in order], rows[order], position[slots]
        pad_to = self.cfg.data.max_len if self.cfg.infer.pad_to_max_len else None
        return DataLoader(TextDataset(items, targets, weights, rows, slots), batch_size=batch_size, shuffle=False,
                          collate_fn=Collator(self.tokenizer, pad_to), num_workers=0)

    def build_model(self, n_outputs: int, pretrained: bool) -> torch.nn.Module:
        """The backbone (pretrained weights, or random ones), model.reinit_layers, train.grad_checkpointing and
        lora.enabled applied in that order, then the pooling and head (modality/text_model.py). With LoRA the
        base weights are always loaded: model.name's in training, the run's backbone/ in inference."""
        m, lora = self.cfg.model, self.cfg.lora
        backbone = load_backbone(self.source, pretrained or lora.enabled)
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # unused by our pooling head; DDP refuses parameters that get no gradient
        if pretrained and m.reinit_layers:
            reinit_top_layers(backbone, m.reinit_layers)
        if self.cfg.train.grad_checkpointing:
            enable_grad_checkpointing(backbone, lora.enabled)
        if lora.enabled:
            backbone = add_adapters(backbone, lora)
        return TextModel(backbone, n_outputs, m.pooling, m.drop_rate, m.msd, m.pool_layers)

    def after_load(self, model: TextModel) -> TextModel:
        """Inference, once a checkpoint is loaded: lora.merge folds the adapters into the base weights."""
        if self.cfg.lora.enabled and self.cfg.lora.merge:
            model.backbone = merge_adapters(model.backbone)
        return model


def load_backbone(source: str, pretrained: bool) -> torch.nn.Module:
    try:
        if pretrained:
            return AutoModel.from_pretrained(source)
        return AutoModel.from_config(AutoConfig.from_pretrained(source))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"config key 'model.name': cannot load a model from {source!r} "
                          f"({type(e).__name__}: {e})") from None
