"""The masked-LM corpus and batches of make pretrain (text projects): texts, held-out split, blocks, masks.

The stage (__init__.py) reads the corpus with read_corpus, splits it with split_texts, tokenises it into
examples with make_examples and masks batches with Masker (DataCollatorForLanguageModeling, reseeded
per batch so masks are a function of (seed, epoch, batch)); EpochBatches feeds one epoch of them to the
shared training loop.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

from ..core.errors import ConfigError, DataError
from ..core.schema import Config, PretrainConfig
from ..data.files import data_path, load_test, load_train, require_columns
from ..modality.text import join_texts
from ..core.tables import read_table


def read_corpus(cfg: Config, sep: str) -> list[str]:
    """train + test texts, then pretrain.extra_files; stripped, empty ones and exact duplicates dropped."""
    cols = list(cfg.data.text_cols)
    texts = join_texts(load_train(cfg), cols, sep) + join_texts(load_test(cfg), cols, sep)
    for name in cfg.pretrain.extra_files:
        path = data_path(cfg, name)
        if not path.is_file():
            raise DataError(f"{path} (pretrain.extra_files) not found; paths are relative to data.dir")
        if path.suffix == ".txt":
            texts += path.read_text(encoding="utf-8", errors="replace").splitlines()
        elif path.suffix == ".csv":
            df = read_table(path, dtype=str)
            require_columns(df, cols, path, "data.text_cols (pretrain.extra_files)")
            texts += join_texts(df, cols, sep)
        else:
            raise ConfigError(f"config key 'pretrain.extra_files': {name} is neither .txt nor .csv")
    texts = list(dict.fromkeys(t.strip() for t in texts))  # ordered dedupe
    texts = [t for t in texts if t]
    if len(texts) < 2:
        raise DataError(f"{len(texts)} non-empty distinct text(s) in {cfg.data.train_file}, {cfg.data.test_file} and "
                        f"pretrain.extra_files (columns {cols}, data.text_cols); pretraining needs at least 2")
    return texts


def split_texts(texts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded share of the TEXTS (not of the blocks) held out, at least one, never all."""
    n_valid = min(len(texts) - 1, max(1, round(fraction * len(texts))))
    held = set(np.random.default_rng(seed).permutation(len(texts))[:n_valid].tolist())
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def make_examples(tokenizer, texts: list[str], p: PretrainConfig) -> list[dict]:
    """Token ids (+ special-token mask, + character offsets for whole-word masking) per example."""
    keys = ["input_ids", "special_tokens_mask"] + (["offset_mapping"] if p.whole_word else [])
    enc = tokenizer(texts, truncation=not p.group_texts, max_length=None if p.group_texts else p.max_len,
                    return_special_tokens_mask=True, return_offsets_mapping=p.whole_word, verbose=False)
    seqs = [{k: np.asarray(enc[k][i], dtype=np.int64) for k in keys} for i in range(len(texts))]
    if not p.group_texts:
        return seqs
    # run_mlm.py's grouping: every text keeps its special tokens; the remainder after the last full block
    # is dropped (a corpus shorter than one block becomes one short block)
    flat = {k: np.concatenate([s[k] for s in seqs]) for k in keys}
    size = min(p.max_len, len(flat["input_ids"]))
    return [{k: v[i * size:(i + 1) * size] for k, v in flat.items()} for i in range(len(flat["input_ids"]) // size)]


class Masker:
    """Pads examples into a batch and masks it with DataCollatorForLanguageModeling. Its generator is reseeded
    from (seed, *key) for every batch: the held-out masks are drawn once and reused for before and after, and
    a resumed run masks batch (epoch, i) exactly as the uninterrupted run did."""

    def __init__(self, tokenizer, p: PretrainConfig, seed: int):
        # whole-word masking in transformers 5 replaces with [MASK] only (it warns and forces this otherwise)
        self.collator = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=p.mlm_probability, whole_word_mask=p.whole_word,
            mask_replace_prob=1.0 if p.whole_word else 0.8, random_replace_prob=0.0 if p.whole_word else 0.1)
        self.pad_id, self.seed = tokenizer.pad_token_id or 0, seed

    def __call__(self, items: list[dict], *key: int) -> dict:
        n, length = len(items), max(len(it["input_ids"]) for it in items)
        ids = torch.full((n, length), self.pad_id, dtype=torch.long)
        special = torch.ones((n, length), dtype=torch.long)  # padding is never masked
        attention = torch.zeros((n, length), dtype=torch.long)
        offsets = torch.zeros((n, length, 2), dtype=torch.long) if "offset_mapping" in items[0] else None
        for i, it in enumerate(items):
            m = len(it["input_ids"])
            ids[i, :m], special[i, :m], attention[i, :m] = (torch.from_numpy(it["input_ids"]),
                                                            torch.from_numpy(it["special_tokens_mask"]), 1)
            if offsets is not None:
                offsets[i, :m] = torch.from_numpy(it["offset_mapping"])
        seed = int(np.random.SeedSequence([self.seed, *key]).generate_state(1)[0])
        self.collator.generator = torch.Generator().manual_seed(seed)
        ids, labels = self.collator.torch_mask_tokens(ids, special_tokens_mask=special, offset_mapping=offsets)
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}


class EpochBatches:
    """One epoch's masked batches of this process, from batch `start` on (a resumed run starts mid-epoch).
    order: this process's example indices for the epoch; batch b holds order[b*bs:(b+1)*bs], masked under
    the key (epoch, b, rank), so the batches and masks of a resumed run are the uninterrupted run's."""

    def __init__(self, examples: list[dict], order: list[int], masker: Masker, batch_size: int, epoch: int,
                 start: int, stop: int, rank: int, device):
        self.examples, self.order, self.masker, self.bs = examples, order, masker, batch_size
        self.epoch, self.start, self.stop, self.rank, self.device = epoch, start, stop, rank, device

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for b in range(self.start, self.stop):
            items = [self.examples[j] for j in self.order[b * self.bs:(b + 1) * self.bs]]
            batch = self.masker(items, 0, self.epoch, b, self.rank)
            yield {"input_ids": batch["input_ids"].to(self.device),
                   "attention_mask": batch["attention_mask"].to(self.device),
                   "target": batch["labels"].to(self.device)}
