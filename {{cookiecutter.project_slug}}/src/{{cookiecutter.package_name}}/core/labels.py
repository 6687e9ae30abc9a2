"""Everything that depends on the problem type: label map, encoding, output activation, loss.

binary / multiclass: one target column of labels (strings or integers) -> class index; softmax over
    one output per class; prediction columns are the class labels themselves.
multilabel: several 0/1 columns -> sigmoid per column; prediction columns are the target columns.
regression: one or several numeric columns, standardised for training -> identity output, de-standardised.

The label map is fitted once on train.csv, written to outputs/<exp>/labels.json, and read back by every
later stage, so labels always map back to their original text in the submission.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .atomic import write_json
from .errors import DataError, rows_message

CLASSIFICATION = ("binary", "multiclass")


def _spelling_key(value: str) -> str:
    """What two spellings of one label share: the stripped text, or the number it writes ("1", "1.0", " 1")."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if np.isfinite(number) else text


def check_spellings(s: pd.Series, col: str, file: str) -> None:
    """Labels that are one value written two ways ("1" and "1.0", "3" and "3 ") would be two classes: refused,
    naming the spellings and how many rows use each, so the file is fixed rather than guessed at."""
    raw = s.astype(str)
    counts = raw.value_counts()
    groups: dict[str, list[str]] = {}
    for spelling in counts.index:
        groups.setdefault(_spelling_key(spelling), []).append(spelling)
    clashes = [g for g in groups.values() if len(g) > 1]
    if clashes:
        shown = "; ".join(" and ".join(f"{v!r} ({counts[v]} rows)" for v in g) for g in clashes[:3])
        raise DataError(f"{file} column '{col}' writes one label in several ways: {shown}; they would be separate "
                        f"classes. Write each label one way in {file}")


def _natural_key(values: list[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


@dataclass
class LabelMap:
    problem: str
    target_cols: list[str]
    classes: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)    # regression: training range (qwk clips to it)
    high: list[float] = field(default_factory=list)

    # ---- fitting and persistence -------------------------------------------------------------------
    @classmethod
    def fit(cls, problem: str, target_cols: list[str], df: pd.DataFrame, id_col: str,
            file: str = "train.csv") -> "LabelMap":
        label_map = cls(problem, list(target_cols))
        values = label_map._checked_values(df, id_col, file)
        if problem in CLASSIFICATION:
            label_map.classes = _natural_key(sorted(set(values[:, 0].tolist())))
            n = len(label_map.classes)
            if problem == "binary" and n != 2:
                raise DataError(f"{file} column '{target_cols[0]}' has {n} distinct labels {label_map.classes[:10]}; "
                                f"a binary problem needs exactly 2 (use problem=multiclass?)")
            if n < 2:
                raise DataError(f"{file} column '{target_cols[0]}' has a single label {label_map.classes}")
            if id_col in label_map.classes:
                raise DataError(f"label '{id_col}' equals the id column's name; rename data.id_col or the label")
        elif problem == "regression":
            const = [c for c, v in zip(target_cols, values.T) if np.all(v == v[0])]
            if const:
                raise DataError(f"{file} column(s) {const} hold one value in every row ({values[0, 0]:g} ...): a "
                                f"constant target leaves nothing to learn; check data.target_cols")
            label_map.mean = values.mean(0).tolist()
            label_map.std = [s if s > 0 else 1.0 for s in values.std(0).tolist()]
            label_map.low, label_map.high = values.min(0).tolist(), values.max(0).tolist()
        return label_map

    def _checked_values(self, df: pd.DataFrame, id_col: str, file: str) -> np.ndarray:
        missing = [c for c in self.target_cols if c not in df.columns]
        if missing:
            raise DataError(f"{file} has no target column {missing}; its columns are {list(df.columns)} "
                            f"(set data.target_cols)")
        out = []
        for col in self.target_cols:
            s = df[col]
            text = s.astype(str).str.strip()
            # "nan" in a target is a NaN written as text (str(float('nan'))); "NA", "None" stay labels
            empty = s.isna() | (text == "") | (text.str.lower() == "nan")
            if empty.any():
                raise DataError(f"{file} column '{col}' has an empty or NaN target at "
                                f"{rows_message(df, empty, id_col)}; "
                                f"fill or drop those rows")
            if self.problem in CLASSIFICATION:
                check_spellings(s, col, file)
                out.append(s.astype(str).str.strip().to_numpy())
                continue
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna()
            if bad.any():
                raise DataError(f"{file} column '{col}' has non-numeric values at {rows_message(df, bad, id_col)}; "
                                f"{self.problem} targets must be numbers")
            inf = ~np.isfinite(num.to_numpy(dtype=float))
            if inf.any():
                raise DataError(f"{file} column '{col}' has an infinite target at {rows_message(df, inf, id_col)}")
            big = np.abs(num.to_numpy(dtype=float)) > np.finfo(np.float32).max
            if big.any():  # the model computes in float32: these would become inf
                raise DataError(f"{file} column '{col}' has targets beyond float32's range (|x| > 3.4e38) at "
                                f"{rows_message(df, big, id_col)}; rescale the column (e.g. log) before training")
            if self.problem == "multilabel" and not num.isin([0, 1]).all():
                bad = ~num.isin([0, 1])
                raise DataError(f"{file} column '{col}' must hold 0 or 1 for multilabel, "
                                f"see {rows_message(df, bad, id_col)}")
            out.append(num.to_numpy(dtype=np.float64))
        return np.stack(out, axis=1)

    def check_known_labels(self, df: pd.DataFrame, id_col: str, file: str) -> None:
        """A file that carries the label column besides train (a labelled test.csv, a pseudo.source) must hold
        only labels of the training map: the model can output no other, so those rows can never be right.
        Empty labels pass: many test files keep the column as a blank placeholder."""
        col = self.target_cols[0]
        if self.problem not in CLASSIFICATION or col not in df.columns:
            return
        labels = df[col].astype(str).str.strip()
        unknown = df[col].notna() & (labels != "") & ~labels.isin(self.classes)
        if unknown.any():
            raise DataError(f"{file} column '{col}' has labels {sorted(set(labels[unknown]))[:5]} outside the training "
                            f"label map {self.classes[:10]} at {rows_message(df, unknown, id_col)}; the model cannot "
                            f"predict them: check that this is the target column, or drop it from {file}")

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "LabelMap":
        return cls(**json.loads(Path(path).read_text()))

    # ---- shapes and names --------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.problem in CLASSIFICATION else len(self.target_cols)

    @property
    def pred_cols(self) -> list[str]:
        return list(self.classes) if self.problem in CLASSIFICATION else list(self.target_cols)

    # ---- conversions -------------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame, id_col: str, file: str = "train.csv", scaled: bool = False) -> np.ndarray:
        """Targets as the model sees them: class index (N,), or float (N, T), standardised if `scaled`."""
        values = self._checked_values(df, id_col, file)
        if self.problem in CLASSIFICATION:
            index = {c: i for i, c in enumerate(self.classes)}
            unknown = ~np.isin(values[:, 0], self.classes)
            if unknown.any():
                raise DataError(f"{file} column '{self.target_cols[0]}' has labels outside the training label map "
                                f"{self.classes[:10]} at {rows_message(df, unknown, id_col)}")
            return np.array([index[v] for v in values[:, 0]], dtype=np.int64)
        if self.problem == "regression" and scaled:
            values = (values - np.array(self.mean)) / np.array(self.std)
        return values.astype(np.float32)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Raw model outputs -> probabilities or target-scale values (what the CSVs hold)."""
        logits = logits.float()
        if self.problem in CLASSIFICATION:
            return logits.softmax(-1)
        if self.problem == "multilabel":
            return logits.sigmoid()
        return logits * torch.tensor(self.std, device=logits.device) + torch.tensor(self.mean, device=logits.device)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.problem in CLASSIFICATION:
            return F.cross_entropy(logits, target)
        if self.problem == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)

    def labels_from_preds(self, preds: np.ndarray) -> list[str]:
        return [self.classes[i] for i in preds.argmax(1)]
