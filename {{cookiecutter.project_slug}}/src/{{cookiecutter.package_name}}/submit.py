"""Submission: test_preds.csv -> submissions/<exp>.csv in exactly sample_submission.csv's format.

    python -m <package>.submit --exp exp001 [submit.format=label|proba]
    make submit EXP=exp001

Same ids in the same order and the same columns as the sample. Formats:
  * sample columns are the class labels          -> one probability column per class
  * sample column is the target (binary/multiclass) -> the label, mapped back to its original value
    (submit.format=proba, or auto with metric roc_auc/log_loss on binary: P(second class))
  * multilabel target columns                    -> probabilities (auto with roc_auc/log_loss) or 0/1
  * regression target columns                    -> values (rounded when the metric is qwk)
Refuses, naming the difference, when ids or columns do not match.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .cli import DataError, run_stage
from .config import Config
from .data import data_path, load_sample_submission
from .predict import open_run
from .runs import RunPaths, write_csv
from .targets import CLASSIFICATION, TargetSpec

PROBA_METRICS = ("roc_auc", "log_loss")


def sample_layout(cfg: Config, spec: TargetSpec, sample: pd.DataFrame) -> tuple[str, str]:
    """How the sample's columns are filled: (layout, format), layout one of classes | label | multilabel |
    regression. Refuses columns this experiment cannot fill; data.load_all calls it before training, so a
    wrong sample stops `make train`, not `make submit` hours later."""
    cols = [c for c in sample.columns if c != cfg.data.id_col]
    fmt = cfg.submit.format
    if spec.problem in CLASSIFICATION and set(cols) == set(spec.classes):
        return "classes", fmt
    if spec.problem in CLASSIFICATION and cols == spec.target_cols:
        if fmt == "auto":
            fmt = "proba" if spec.problem == "binary" and cfg.metric in PROBA_METRICS else "label"
        if fmt == "proba" and spec.problem != "binary":
            raise DataError(f"{data_path(cfg, cfg.data.sample_submission_file)} has one column {cols} but "
                            f"{len(spec.classes)} classes: probabilities need one column per class; "
                            f"use submit.format=label")
        return "label", fmt
    if spec.problem in ("multilabel", "regression") and set(cols) == set(spec.target_cols):
        if fmt == "auto":
            fmt = "proba" if spec.problem == "multilabel" and cfg.metric in PROBA_METRICS else "label"
        return spec.problem, fmt
    want = spec.classes if spec.problem in CLASSIFICATION else spec.target_cols
    raise DataError(f"{data_path(cfg, cfg.data.sample_submission_file)} has columns {cols} besides "
                    f"'{cfg.data.id_col}'; this experiment predicts {want[:10]} ({spec.problem}). Make the sample's "
                    f"columns the target column(s){' or the class labels' if spec.problem in CLASSIFICATION else ''}")


def build_submission(cfg: Config, spec: TargetSpec, preds: pd.DataFrame, sample: pd.DataFrame) -> pd.DataFrame:
    id_col = cfg.data.id_col
    sample_path = data_path(cfg, cfg.data.sample_submission_file)
    layout, fmt = sample_layout(cfg, spec, sample)
    cols = [c for c in sample.columns if c != id_col]
    extra = sorted(set(sample[id_col]) - set(preds[id_col]))
    missing = sorted(set(preds[id_col]) - set(sample[id_col]))
    if extra or missing or len(sample) != len(preds):
        raise DataError(f"{sample_path} and the test predictions hold different ids: {len(extra)} only in the "
                        f"sample (e.g. {extra[:3]}), {len(missing)} only in the predictions (e.g. {missing[:3]})")
    p = preds.set_index(id_col).loc[sample[id_col]]
    out = pd.DataFrame({id_col: sample[id_col].to_numpy()})
    if layout == "classes":
        for c in cols:
            out[c] = p[c].to_numpy()
    elif layout == "label":
        values = p[spec.classes].to_numpy()
        out[cols[0]] = values[:, 1] if fmt == "proba" else spec.labels_from_preds(values)
    elif layout == "multilabel":
        for c in cols:
            v = p[c].to_numpy()
            out[c] = v if fmt == "proba" else (v >= cfg.submit.threshold).astype(int)
    else:
        for c in cols:
            v = p[c].to_numpy()
            if cfg.metric == "qwk":  # grades: round and keep inside the training range
                j = spec.target_cols.index(c)
                lo, hi = (spec.low[j], spec.high[j]) if spec.low else (-np.inf, np.inf)
                v = np.clip(np.rint(v), np.ceil(lo), np.floor(hi)).astype(int)
            out[c] = v
    return out


def run(exp: str | None, overrides: list[str]) -> pd.DataFrame:
    cfg, paths, spec = open_run(exp, overrides, "submit")
    preds = pd.read_csv(paths.require(paths.test_preds, "predict"), dtype={cfg.data.id_col: str})
    cols = [c for c in preds.columns if c != cfg.data.id_col]
    if cols != spec.pred_cols:  # predictions made under another label map would fill the wrong columns
        raise DataError(f"{paths.test_preds} holds columns {cols[:10]}, {paths.labels} predicts "
                        f"{spec.pred_cols[:10]}; re-run make predict EXP={paths.exp}")
    sample = load_sample_submission(cfg)
    sub = build_submission(cfg, spec, preds, sample)
    out = RunPaths(cfg).submission
    write_csv(out, sub)
    print(f"submission written: {out} ({len(sub)} rows, columns {list(sub.columns)})")
    return sub


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
