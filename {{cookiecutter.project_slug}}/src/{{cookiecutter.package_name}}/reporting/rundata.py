"""Everything a report reads of one run folder, each piece None (with the reason in `notes`) when it is missing:
a full fit has no OOF, a half-finished run has only its done folds, an ensemble no history."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import load
from ..core.errors import ConfigError, DataError
from ..core.labels import LabelMap
from ..core.rundir import RunPaths
from ..core.schema import Config
from ..core.tables import read_table
from ..data.files import load_train


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, OSError):
        return None


@dataclass
class Run:
    cfg: Config
    paths: RunPaths
    cv: dict | None = None
    record: dict | None = None
    label_map: LabelMap | None = None
    history: pd.DataFrame | None = None
    done: dict = field(default_factory=dict)          # fold -> done.json
    train: pd.DataFrame | None = None                 # train.csv rows that have an OOF prediction
    oof: np.ndarray | None = None                     # (N, C) of those rows
    y: np.ndarray | None = None                       # targets of those rows (label_map.encode)
    fold: np.ndarray | None = None
    notes: dict = field(default_factory=dict)         # piece -> why it is missing


def open_report_run(outputs: Path, exp: str, overrides: list[str]) -> Run:
    config_file = Path(outputs) / exp / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"{config_file} does not exist: no run '{exp}' to report on (make train EXP={exp} first)")
    cfg = load(exp, overrides, base=config_file)
    cfg.paths.outputs = str(outputs)
    paths = RunPaths(cfg)
    run = Run(cfg, paths, cv=_json(paths.cv), record=_json(paths.run_record))
    if run.cv is None:
        run.notes["cv"] = f"no {paths.cv.name}: the run has not finished (or failed); shown: what its folds left"
    if paths.labels.is_file():
        run.label_map = LabelMap.load(paths.labels)
    for d in sorted(paths.dir.glob("fold*/done.json")):
        info = _json(d)
        if info is not None and d.parent.name[4:].isdigit():
            run.done[int(d.parent.name[4:])] = info
    read_history(run)
    read_oof(run)
    return run


def read_history(run: Run) -> None:
    path = run.paths.history
    if not path.is_file():
        rows = [r for d in run.done.values() for r in d.get("rows", [])]
        if not rows:
            run.notes["history"] = f"no {path.name}: this kind of run ({(run.cv or {}).get('kind', '?')}) trains no epochs here"
            return
        hist = pd.DataFrame(rows)
    else:
        try:
            hist = read_table(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
            run.notes["history"] = f"{path.name} is not readable ({e})"
            return
    if hist.empty or not {"epoch", "fold"} <= set(hist.columns):
        run.notes["history"] = f"{path.name} holds no epoch rows yet"
        return
    # SWA's evaluation is drawn at the last epoch, as training/kfold.py plots it
    hist["epoch"] = pd.to_numeric(hist["epoch"].replace("swa", run.cfg.train.epochs), errors="coerce")
    run.history = hist


def oof_frame(run: Run) -> pd.DataFrame | None:
    """oof_preds.csv, or for a half-finished run the done folds' fold<k>/oof.csv."""
    id_col = run.cfg.data.id_col
    if run.paths.oof.is_file():
        return read_table(run.paths.oof, dtype={id_col: str})
    parts = [read_table(run.paths.fold_oof(k), dtype={id_col: str}) for k in sorted(run.done)
             if run.paths.fold_oof(k).is_file()]
    if parts:
        run.notes["oof_partial"] = (f"no {run.paths.oof.name} yet: the OOF of the finished folds {sorted(run.done)} "
                                    f"(fold<k>/oof.csv) is shown")
        return pd.concat(parts, ignore_index=True)
    kind = (run.cv or {}).get("kind")
    run.notes["oof"] = (f"no OOF predictions: a full fit trains on every row (its CV is {run.cv.get('cv_source')}'s)"
                        if kind == "full_fit" else f"no {run.paths.oof.name} and no finished fold yet")
    return None


def read_oof(run: Run) -> None:
    frame = oof_frame(run)
    if frame is None or run.label_map is None:
        if frame is not None:
            run.notes["oof"] = f"no {run.paths.labels.name}: the OOF rows cannot be matched with their labels"
        return
    id_col, lm = run.cfg.data.id_col, run.label_map
    try:
        train = load_train(run.cfg)
    except (DataError, ConfigError) as e:
        run.notes["oof"] = f"the targets are not readable ({e}); set data.dir=<folder of train.csv> in ARGS"
        return
    frame = frame.dropna(subset=lm.pred_cols)
    train = train.merge(frame[[id_col]], on=id_col, how="inner")
    if train.empty:
        run.notes["oof"] = f"no OOF row has an id of {run.cfg.data.dir}/{run.cfg.data.train_file}"
        return
    oof = frame.set_index(id_col).loc[train[id_col], lm.pred_cols].to_numpy(np.float64)
    run.train, run.oof, run.y = train, oof, lm.encode(train, id_col, run.cfg.data.train_file)
    if run.paths.folds.is_file():
        folds = read_table(run.paths.folds, dtype={id_col: str}).set_index(id_col)["fold"]
        run.fold = folds.reindex(train[id_col]).to_numpy()
