"""A data report before the first experiment: balance, sizes or lengths, missing values, duplicates, shift.

    make eda [EXP=baseline] [ARGS="data.dir=..."]
    python -m <package> eda --exp baseline data.dir=/kaggle/input/comp

Reads the competition files named by the config (data.dir, data.train_file, data.test_file, data.id_col,
data.target_cols, data.image_col or data.text_cols; text projects tokenise with model.name's tokenizer),
through the same loaders as training, and writes outputs/eda/: report.md, summary.json (the numbers, for
scripts) and PNG plots (target.png, shift.png, plus samples.png / sizes.png for images, lengths.png for
texts). Nothing is trained and nothing else is written; it runs in seconds on ~5k rows.

Sections: rows and columns; missing values per column; the target (class counts and imbalance ratio,
positive rate per column, or the distribution); image sizes and channels / text lengths in tokens with the
data.max_len covering 95% / 99%; exact and near duplicates within train and between train and test, and
duplicated train rows with conflicting labels; train/test shift: per-feature statistics, and adversarial
validation, the 5-fold CV ROC-AUC of a quick classifier telling test rows from train rows (0.5 = it cannot,
no shift to see; near 1 = test looks different, so CV may not predict the leaderboard). Files with more
than eda.max_rows rows are sampled for everything after the target section.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.atomic import write_json, write_text
from ..core.cli import run_stage
from ..core.config import load
from ..core.labels import CLASSIFICATION
from ..core.rundir import eda_dir
from ..core.schema import Config
from ..data.files import load_test, load_train
from .report import Profile, figure, save_png, table

EXAMPLES = 5     # ids shown per finding


def sample(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    return df if not max_rows or len(df) <= max_rows else df.sample(max_rows, random_state=seed).sort_index()


def missing_section(cfg: Config, train: pd.DataFrame, test: pd.DataFrame) -> tuple[list[str], dict]:
    rows = []
    for col in dict.fromkeys([*train.columns, *test.columns]):
        counts = [int(d[col].isna().sum() + (d[col].astype(str).str.strip() == "").sum()) if col in d else None
                  for d in (train, test)]
        if any(c for c in counts if c):
            rows.append({"column": col, "train missing": counts[0] if counts[0] is not None else "-",
                         "test missing": counts[1] if counts[1] is not None else "-"})
    lines = ["## Missing values", ""]
    lines += [table(pd.DataFrame(rows)), "", "Empty strings count as missing. Targets must be complete: "
              "`make check` names the lines to fix."] if rows else ["No empty cells in either file."]
    return lines + [""], {r["column"]: [r["train missing"], r["test missing"]] for r in rows}


def target_section(cfg: Config, train: pd.DataFrame, out: Path) -> tuple[list[str], dict]:
    cols = list(cfg.data.target_cols)
    lines = ["## Target", ""]
    if cfg.problem in CLASSIFICATION:
        counts = train[cols[0]].dropna().astype(str).str.strip().value_counts()
        ratio = float(counts.max() / counts.min())
        df = pd.DataFrame({"label": counts.index, "count": counts.to_numpy(),
                           "share": counts.to_numpy() / counts.sum()})
        lines += [table(df), "", f"Imbalance ratio (largest / smallest class): **{ratio:.2f}**"
                  + (". Above ~5, look at f1_macro / per-class recall, loss.class_weights=balanced or "
                     "loss.name=focal." if ratio > 5 else ".")]
        fig, (ax,) = figure(1, width=max(4.0, 0.4 * len(counts)))
        ax.bar(counts.index.astype(str), counts.to_numpy())
        ax.set_title(f"{cols[0]}: class counts")
        ax.tick_params(axis="x", rotation=90)
        summary = {"counts": counts.to_dict(), "imbalance_ratio": ratio}
    elif cfg.problem == "multilabel":
        values = train[cols].apply(pd.to_numeric, errors="coerce")
        rate = values.mean()
        per_row = values.sum(1).value_counts().sort_index()
        lines += [table(pd.DataFrame({"column": cols, "positive rate": rate.to_numpy(),
                                      "positives": values.sum().astype(int).to_numpy()})), "",
                  "Labels per row: " + ", ".join(f"{int(k)}: {v}" for k, v in per_row.items())]
        fig, (ax,) = figure(1, width=max(4.0, 0.4 * len(cols)))
        ax.bar(cols, rate.to_numpy())
        ax.set_title("positive rate per target column")
        ax.tick_params(axis="x", rotation=90)
        summary = {"positive_rate": rate.to_dict()}
    else:
        values = train[cols].apply(pd.to_numeric, errors="coerce")
        desc = values.describe().T
        desc["skew"] = values.skew()
        lines += [table(desc.reset_index(names="column"))]
        fig, axes = figure(len(cols))
        for ax, c in zip(axes, cols):
            ax.hist(values[c].dropna(), bins=40)
            ax.set_title(f"{c}: distribution")
        summary = {"describe": desc.to_dict(orient="index")}
    save_png(out / "target.png", fig)
    return lines + ["", "![target](target.png)", ""], summary


def ids(df: pd.DataFrame, id_col: str, rows) -> str:
    rows = list(rows)
    shown = ", ".join(str(df[id_col].iloc[r]) for r in rows[:EXAMPLES])
    return shown + (f" and {len(rows) - EXAMPLES} more" if len(rows) > EXAMPLES else "")


def duplicates_section(cfg: Config, probe, tr: Profile, te: Profile) -> tuple[list[str], dict]:
    id_col, targets = cfg.data.id_col, list(cfg.data.target_cols)
    ok_tr, ok_te = tr.problems == "", te.problems == ""
    key_tr = tr.key.where(ok_tr)
    dup = key_tr.duplicated(keep=False) & ok_tr
    groups = tr.df[dup].assign(_key=key_tr[dup]).groupby("_key")
    label = lambda g: g[targets].astype(str).apply("|".join, axis=1)  # noqa: E731
    conflicts = [g for _, g in groups if label(g).nunique() > 1]
    in_train = set(key_tr[ok_tr])
    cross = np.flatnonzero(ok_te & te.key.isin(in_train))
    near_tr, near_te = probe.near_duplicates(tr, te)
    what = probe.KEY_DESCRIPTION
    lines = ["## Duplicates", "", f"Exact duplicates ({what}):", "",
             f"- within train: {groups.ngroups} group(s), {int(dup.sum())} rows"
             + (f" (e.g. ids {ids(tr.df, id_col, np.flatnonzero(dup))})" if dup.any() else ""),
             f"- test rows identical to a train row: **{len(cross)}**"
             + (f" (test ids {ids(te.df, id_col, cross)}): their labels are known; a leak to exploit or to "
                f"remove from validation" if len(cross) else ""),
             f"- duplicated train rows with conflicting labels: **{len(conflicts)}** group(s)"
             + (" (ids " + "; ".join(", ".join(map(str, g[id_col].head(3))) for g in conflicts[:EXAMPLES])
                + "): label noise; consider dropping or relabelling them" if conflicts else ""),
             "", f"Near duplicates ({probe.NEAR_DESCRIPTION}), exact ones excluded:", "",
             f"- within train: {len(near_tr)} pair(s)" + (" (e.g. " + "; ".join(
                 f"{tr.df[id_col].iloc[i]} ~ {tr.df[id_col].iloc[j]}" for i, j in near_tr[:EXAMPLES]) + ")"
                 if near_tr else ""),
             f"- test rows with a near duplicate in train: {len(near_te)}" + (" (e.g. " + "; ".join(
                 f"test {te.df[id_col].iloc[i]} ~ train {tr.df[id_col].iloc[j]}" for i, j in near_te[:EXAMPLES]) + ")"
                 if near_te else ""),
             "", "Duplicates across folds inflate CV: group them with data.group_col if there are many.", ""]
    summary = {"train_exact_groups": int(groups.ngroups), "train_exact_rows": int(dup.sum()),
               "train_test_exact": int(len(cross)), "train_test_exact_ids": te.df[id_col].iloc[cross].tolist(),
               "conflicting_groups": len(conflicts), "train_near_pairs": len(near_tr), "test_near_train": len(near_te)}
    return lines, summary


def adversarial_auc(x, is_test: np.ndarray, seed: int) -> float:
    """5-fold CV ROC-AUC of a logistic regression telling test rows (1) from train rows (0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    # balanced: the test file is usually smaller; AUC is insensitive to that, the fit is not
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    p = cross_val_predict(clf, x, is_test, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(is_test, p))


def meaning(auc: float) -> str:
    if auc < 0.6:
        return "no detectable shift: random folds of train should predict the test score"
    if auc < 0.75:
        return ("mild shift: look at the features below with an AUC far from 0.5; CV may be somewhat "
                "optimistic or pessimistic")
    return ("strong shift: test looks different from train. Validate on the train rows most like test "
            "(highest adversarial probability), and expect the leaderboard to disagree with CV")


def shift_section(cfg: Config, probe, tr: Profile, te: Profile, out: Path) -> tuple[list[str], dict]:
    from sklearn.metrics import roc_auc_score

    ok_tr, ok_te = (tr.problems == "").to_numpy(), (te.problems == "").to_numpy()
    numeric = [c for c in tr.df.select_dtypes("number").columns
               if c in te.df.columns and c not in (cfg.data.id_col, *cfg.data.target_cols)]
    stats_tr = pd.concat([tr.stats, tr.df[numeric].reset_index(drop=True)], axis=1)[ok_tr]
    stats_te = pd.concat([te.stats, te.df[numeric].reset_index(drop=True)], axis=1)[ok_te]
    is_test = np.r_[np.zeros(len(stats_tr)), np.ones(len(stats_te))].astype(int)
    rows = []
    for c in stats_tr.columns:
        both = pd.concat([stats_tr[c], stats_te[c]]).astype(float)
        single = roc_auc_score(is_test, both.fillna(both.median())) if both.nunique() > 1 else 0.5
        rows.append({"feature": c, "train mean": stats_tr[c].mean(), "test mean": stats_te[c].mean(),
                     "train std": stats_tr[c].std(), "test std": stats_te[c].std(), "AUC alone": single})
    auc = adversarial_auc(probe.adversarial_features(tr, te, ok_tr, ok_te), is_test, cfg.seed)
    fig, axes = figure(len(stats_tr.columns))
    for ax, c in zip(axes, stats_tr.columns):
        ax.hist([stats_tr[c].dropna(), stats_te[c].dropna()], bins=30, density=True, label=["train", "test"])
        ax.set_title(c)
        ax.legend()
    save_png(out / "shift.png", fig)
    lines = ["## Train / test shift", "", table(pd.DataFrame(rows)), "",
             "AUC alone: how well that one feature tells test from train (0.5 = not at all; far from 0.5 either "
             "way = shifted).", "", "![shift](shift.png)", "",
             f"Adversarial validation ({probe.ADVERSARIAL_DESCRIPTION}; logistic regression, 5-fold CV): "
             f"**ROC-AUC {auc:.3f}**, {meaning(auc)}.", ""]
    return lines, {"adversarial_auc": auc, "features": {r["feature"]: r["AUC alone"] for r in rows}}


def report(cfg: Config) -> dict:
    out = eda_dir(cfg)
    probe = importlib.import_module(f"{__package__}.{cfg.task}")
    train_full, test_full = load_train(cfg), load_test(cfg)
    train = sample(train_full, cfg.eda.max_rows, cfg.seed).reset_index(drop=True)
    test = sample(test_full, cfg.eda.max_rows, cfg.seed).reset_index(drop=True)
    context = probe.Context(cfg)
    tr, te = probe.profile(context, train), probe.profile(context, test)
    lines = [f"# Data report: {cfg.data.dir}", "",
             *(f"- {name}: {len(d)} rows x {d.shape[1]} columns {list(d.columns)}"
               for name, d in ((cfg.data.train_file, train_full), (cfg.data.test_file, test_full))),
             f"- task {cfg.task}, problem {cfg.problem}, target {list(cfg.data.target_cols)}"]
    if len(train) < len(train_full) or len(test) < len(test_full):
        lines.append(f"- sampled {len(train)} train and {len(test)} test rows (eda.max_rows={cfg.eda.max_rows}) "
                     f"for the sections after the target")
    lines.append("")
    summary: dict[str, Any] = {"train_rows": len(train_full), "test_rows": len(test_full)}
    sections = [("missing", missing_section(cfg, train_full, test_full)),
                ("target", target_section(cfg, train_full, out)),
                (cfg.task, probe.section(context, tr, te, out)),
                ("duplicates", duplicates_section(cfg, probe, tr, te)),
                ("shift", shift_section(cfg, probe, tr, te, out))]
    for name, (section_lines, numbers) in sections:
        lines += section_lines
        summary[name] = numbers
    write_text(out / "report.md", "\n".join(lines))
    write_json(out / "summary.json", summary)
    print(f"adversarial AUC {summary['shift']['adversarial_auc']:.3f}; duplicates train/test "
          f"{summary['duplicates']['train_test_exact']}; report -> {out / 'report.md'}")
    return summary


def main(argv=None):
    run_stage(lambda exp, overrides: report(load(exp, overrides)), argv)


if __name__ == "__main__":
    main()
