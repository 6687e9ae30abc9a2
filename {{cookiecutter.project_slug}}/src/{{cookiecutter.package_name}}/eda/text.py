"""make eda's text probe: token lengths with the project's tokenizer, normalised-text and TF-IDF duplicates.

Texts are the model's input: data.text_cols joined with the tokenizer's separator (text.Modality), and
lengths are counted with model.name's tokenizer, special tokens included, before any truncation, so the
max_len covering 95% / 99% can be copied into data.max_len. Near duplicates: cosine similarity of TF-IDF
character 3-5-grams above NEAR_SIM (catches re-punctuation, casing, small edits).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..modality import get_modality
from .report import Profile, figure, save_png, table

KEY_DESCRIPTION = "same text after lower-casing and collapsing whitespace"
NEAR_DESCRIPTION = "TF-IDF character 3-5-gram cosine similarity > 0.9"
ADVERSARIAL_DESCRIPTION = "TF-IDF of words and word pairs, plus the lengths in characters, words and tokens"
NEAR_SIM = 0.9
PERCENTILES = (50, 90, 95, 99)
_SPACE = re.compile(r"\s+")


class Context:
    def __init__(self, cfg):
        self.cfg = cfg
        self.mod = get_modality(cfg)  # the tokenizer training will use (model.name)


def profile(ctx: Context, df: pd.DataFrame) -> Profile:
    texts = ctx.mod.texts(df)
    tokens = ctx.mod.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"] if texts else []
    stats = pd.DataFrame({"chars": [len(t) for t in texts], "words": [len(t.split()) for t in texts],
                          "tokens": [len(t) for t in tokens]}, dtype=float)
    key = pd.Series([_SPACE.sub(" ", t.lower()).strip() for t in texts], dtype=object)
    problems = pd.Series(np.where(key == "", "empty text", ""), dtype=object)
    return Profile(df, key, stats, problems, {"texts": texts})


def section(ctx: Context, tr: Profile, te: Profile, out: Path) -> tuple[list[str], dict]:
    max_len = ctx.cfg.data.max_len
    both = pd.concat([tr.stats["tokens"], te.stats["tokens"]])
    rows = []
    for name, s in (("train", tr.stats["tokens"]), ("test", te.stats["tokens"])):
        rows.append({"file": name, **{f"p{q}": float(np.percentile(s, q)) if len(s) else 0.0 for q in PERCENTILES},
                     "max": s.max(), f"> max_len={max_len}": f"{(s > max_len).mean():.1%}"})
    cover = {q: int(np.ceil(np.percentile(both, q))) if len(both) else 0 for q in (95, 99)}
    model_limit = ctx.mod.tokenizer.model_max_length
    lines = ["## Text lengths", "",
             f"Tokens per text with {ctx.cfg.model.name}'s tokenizer (special tokens included, no truncation), "
             f"texts = data.text_cols {list(ctx.cfg.data.text_cols)} joined with {ctx.mod.sep!r}:", "",
             table(pd.DataFrame(rows), "{:.0f}"), "",
             f"data.max_len covering 95% of train+test texts: **{cover[95]}**, 99%: **{cover[99]}** "
             f"(now {max_len}). Longer texts are cut (tta.views head/tail/head_tail choose which end).",
             *([f"The model takes at most {model_limit} tokens."] if model_limit < 10**6 and cover[99] > model_limit
               else []), "", "![lengths](lengths.png)", ""]
    fig, (ax,) = figure(1, 6, 3.5)
    ax.hist([tr.stats["tokens"], te.stats["tokens"]], bins=50, label=["train", "test"])
    for x, style, label in ((max_len, "-", "data.max_len"), (cover[95], "--", "95%"), (cover[99], ":", "99%")):
        ax.axvline(x, color="k", linestyle=style, label=f"{label} = {x}")
    ax.set_xlabel("tokens")
    ax.legend()
    save_png(out / "lengths.png", fig)
    return lines, {"tokens": rows, "max_len_95": cover[95], "max_len_99": cover[99]}


def near_duplicates(tr: Profile, te: Profile):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    ok_tr, ok_te = np.flatnonzero(tr.problems == ""), np.flatnonzero(te.problems == "")
    if len(ok_tr) < 2:
        return [], []
    texts = [tr.key.iloc[i] for i in ok_tr] + [te.key.iloc[i] for i in ok_te]
    x = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                        dtype=np.float32).fit_transform(texts)
    x_tr, x_te = x[:len(ok_tr)], x[len(ok_tr):]
    nn = NearestNeighbors(n_neighbors=min(6, len(ok_tr)), metric="cosine", algorithm="brute").fit(x_tr)
    within = set()
    dist, idx = nn.kneighbors(x_tr)
    for i, (d_row, j_row) in enumerate(zip(dist, idx)):
        for d, j in zip(d_row, j_row):
            a, b = sorted((int(ok_tr[i]), int(ok_tr[j])))
            if a != b and 1 - d > NEAR_SIM and tr.key.iloc[a] != tr.key.iloc[b]:
                within.add((a, b))
    across = []
    if len(ok_te):
        dist, idx = nn.kneighbors(x_te, n_neighbors=1)
        across = [(int(ok_te[i]), int(ok_tr[j[0]])) for i, (d, j) in enumerate(zip(dist, idx))
                  if 1 - d[0] > NEAR_SIM and te.key.iloc[ok_te[i]] != tr.key.iloc[ok_tr[j[0]]]]
    return sorted(within), across


def adversarial_features(tr: Profile, te: Profile, ok_tr: np.ndarray, ok_te: np.ndarray):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [t for t, ok in zip(tr.extra["texts"], ok_tr) if ok]
    texts += [t for t, ok in zip(te.extra["texts"], ok_te) if ok]
    min_df = 2 if len(texts) >= 100 else 1  # a tiny file could otherwise leave no vocabulary
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, max_features=50000,
                            sublinear_tf=True).fit_transform(texts)
    lengths = np.log1p(np.vstack([tr.stats[ok_tr].to_numpy(float), te.stats[ok_te].to_numpy(float)]))
    lengths = (lengths - lengths.mean(0)) / (lengths.std(0) + 1e-6)
    return sp.hstack([words, sp.csr_matrix(lengths)]).tocsr()
