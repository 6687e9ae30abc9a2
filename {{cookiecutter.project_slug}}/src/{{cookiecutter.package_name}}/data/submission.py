"""The submission's layout: test predictions -> a frame in exactly sample_submission.csv's format (pure).

The stage that writes it is submit.py (a code-competition bundle: inference/offline.py, through the same
submission_from_preds); data.preflight checks the layout before training.
Same ids in the same order and the same columns as the sample. Formats:
  * sample columns are the class labels          -> one probability column per class
  * sample column is the target (binary/multiclass) -> the label, mapped back to its original value
    (submit.format=proba, or auto with metric roc_auc/log_loss on binary: P(second class))
  * multilabel target columns                    -> probabilities (auto with roc_auc/log_loss) or 0/1
  * regression target columns                    -> values (rounded when the metric is qwk)
Refuses, naming the difference, when ids or columns do not match.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.labels import CLASSIFICATION, LabelMap
from ..core.schema import Config
from .files import data_path, load_sample_submission
from ..core.tables import read_table

PROBA_METRICS = ("roc_auc", "log_loss")


def sample_layout(cfg: Config, label_map: LabelMap, sample: pd.DataFrame) -> tuple[str, str]:
    """How the sample's columns are filled: (layout, format), layout one of classes | label | multilabel |
    regression. Refuses columns this experiment cannot fill; data.load_all calls it before training, so a
    wrong sample stops `make train`, not `make submit` hours later."""
    cols = [c for c in sample.columns if c != cfg.data.id_col]
    fmt = cfg.submit.format
    if label_map.problem in CLASSIFICATION and set(cols) == set(label_map.classes):
        return "classes", fmt
    if label_map.problem in CLASSIFICATION and cols == label_map.target_cols:
        if fmt == "auto":
            fmt = "proba" if label_map.problem == "binary" and cfg.metric in PROBA_METRICS else "label"
        if fmt == "proba" and label_map.problem != "binary":
            raise DataError(f"{data_path(cfg, cfg.data.sample_submission_file)} has one column {cols} but "
                            f"{len(label_map.classes)} classes: probabilities need one column per class; "
                            f"use submit.format=label")
        return "label", fmt
    if label_map.problem in ("multilabel", "regression") and set(cols) == set(label_map.target_cols):
        if fmt == "auto":
            fmt = "proba" if label_map.problem == "multilabel" and cfg.metric in PROBA_METRICS else "label"
        return label_map.problem, fmt
    want = label_map.classes if label_map.problem in CLASSIFICATION else label_map.target_cols
    raise DataError(f"{data_path(cfg, cfg.data.sample_submission_file)} has columns {cols} besides "
                    f"'{cfg.data.id_col}'; this experiment predicts {want[:10]} ({label_map.problem}). Make the "
                    f"sample's columns the target column(s)"
                    f"{' or the class labels' if label_map.problem in CLASSIFICATION else ''}")


def build_submission(cfg: Config, label_map: LabelMap, preds: pd.DataFrame, sample: pd.DataFrame) -> pd.DataFrame:
    id_col = cfg.data.id_col
    sample_path = data_path(cfg, cfg.data.sample_submission_file)
    layout, fmt = sample_layout(cfg, label_map, sample)
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
        values = p[label_map.classes].to_numpy()
        out[cols[0]] = values[:, 1] if fmt == "proba" else label_map.labels_from_preds(values)
    elif layout == "multilabel":
        for c in cols:
            v = p[c].to_numpy()
            out[c] = v if fmt == "proba" else (v >= cfg.submit.threshold).astype(int)
    else:
        for c in cols:
            v = p[c].to_numpy()
            if cfg.metric == "qwk":  # grades: round and keep inside the training range
                j = label_map.target_cols.index(c)
                lo, hi = (label_map.low[j], label_map.high[j]) if label_map.low else (-np.inf, np.inf)
                v = np.clip(np.rint(v), np.ceil(lo), np.floor(hi)).astype(int)
            out[c] = v
    return out


def submission_from_preds(cfg: Config, label_map: LabelMap, preds_file: Path, remedy: str) -> pd.DataFrame:
    """test_preds.csv -> the submission frame (make submit, and a bundle on Kaggle: the same bytes). Refuses
    predictions whose columns are not the label map's: they would fill the wrong columns. remedy: what to run."""
    preds = read_table(preds_file, dtype={cfg.data.id_col: str})
    cols = [c for c in preds.columns if c != cfg.data.id_col]
    if cols != label_map.pred_cols:
        raise DataError(f"{preds_file} holds columns {cols[:10]}, labels.json predicts {label_map.pred_cols[:10]}; "
                        f"{remedy}")
    return build_submission(cfg, label_map, preds, load_sample_submission(cfg))
