"""Demo text competition: generated sentences plus a tiny BERT built locally (no download).

Each sentence mixes topic or sentiment words with filler. Targets by problem: binary = positive (1)
or negative (0) sentiment; multiclass = topic name (string labels); multilabel = whether each topic
appears, one target column per topic; regression = positive minus negative word count.
The tiny BERT (2 layers, hidden 32, seeded random weights) and its WordPiece tokenizer over the corpus's
words (built with `tokenizers`) are saved to data.dir/tiny_bert: use model.name=<data.dir>/tiny_bert.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TOPICS = {
    "sports": "goal match team score coach league player stadium".split(),
    "music": "song guitar album band concert melody drummer chorus".split(),
    "food": "pizza recipe spicy bread dinner kitchen flavor soup".split(),
    "travel": "flight hotel beach passport island train journey map".split(),
}
SENTIMENT = {1: "great wonderful superb delightful brilliant lovely".split(),
             0: "awful terrible boring dreadful clumsy bland".split()}
FILLER = "the a of and to in it was is this that with for on as at by very really quite".split()


def sentence(rng, words: list[str]) -> str:
    picked = list(rng.choice(words, size=rng.integers(2, 4))) + list(rng.choice(FILLER, size=rng.integers(4, 9)))
    rng.shuffle(picked)
    return " ".join(picked)


def make_rows(problem: str, n: int, cols: list[str], rng) -> tuple[list[str], dict]:
    texts, y = [], {c: [] for c in cols}
    topics = list(TOPICS)
    for _ in range(n):
        if problem in ("binary", "regression"):
            pos, neg = rng.integers(0, 4), rng.integers(0, 4)
            if problem == "binary":
                pos, neg = (pos + 1, 0) if rng.random() < 0.5 else (0, neg + 1)
            words = list(rng.choice(SENTIMENT[1], pos)) + list(rng.choice(SENTIMENT[0], neg))
            words += list(rng.choice(FILLER, rng.integers(4, 9)))
            rng.shuffle(words)
            texts.append(" ".join(words))
            for i, c in enumerate(cols):
                y[c].append(int(pos > 0) if problem == "binary" else float((pos - neg) * (i + 1)))
        elif problem == "multiclass":
            t = topics[rng.integers(len(topics))]
            texts.append(sentence(rng, TOPICS[t]))
            y[cols[0]].append(t)
        else:
            present = [t for t in topics if rng.random() < 0.4] or [topics[rng.integers(len(topics))]]
            texts.append(" ".join(sentence(rng, TOPICS[t]) for t in present))
            for i, c in enumerate(cols):
                y[c].append(int(topics[i % len(topics)] in present))
    return texts, y


def build_tiny_bert(out: Path, corpus: list[str]) -> Path:
    """A 2-layer, 32-hidden BERT with a WordPiece tokenizer over `corpus`'s words, saved for from_pretrained.
    Reproducible: the vocabulary is every word and character of the corpus in sorted order (the WordPiece
    trainer of `tokenizers` breaks ties between equally frequent pieces differently from run to run), and
    the random weights are seeded."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = sorted({w for text in corpus for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))})
    chars = sorted({c for w in words for c in w})
    pieces = special + chars + [f"##{c}" for c in chars] + [w for w in words if len(w) > 1]
    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(dict.fromkeys(pieces))}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(out)
    return out


def write_demo(cfg, rows: int) -> Path:
    out = Path(cfg.data.dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    d = cfg.data
    texts, y = make_rows(cfg.problem, rows, list(d.target_cols), rng)
    # several text columns: split each text across them so joining them matters
    parts = [np.array_split(t.split(), len(d.text_cols)) for t in texts]
    text_cols = {c: [" ".join(p[j]) or "empty" for p in parts] for j, c in enumerate(d.text_cols)}
    ids = [f"txt{i:05d}" for i in range(rows)]
    df = pd.DataFrame({d.id_col: ids, **text_cols, **y})
    n_test = len(df) // 5
    test, train = df.iloc[:n_test], df.iloc[n_test:]
    train.to_csv(out / d.train_file, index=False)
    test[[d.id_col, *d.text_cols]].to_csv(out / d.test_file, index=False)
    sample = test[[d.id_col] + list(d.target_cols)].copy()
    sample[list(d.target_cols)] = sample[list(d.target_cols)].iloc[0].to_numpy()
    sample.to_csv(out / d.sample_submission_file, index=False)
    test[[d.id_col] + list(d.target_cols)].to_csv(out / "solution.csv", index=False)
    build_tiny_bert(out / "tiny_bert", texts)
    return out
