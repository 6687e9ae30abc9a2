"""make submit: outputs/<exp>/test_preds.csv -> submissions/<exp>.csv in exactly sample_submission.csv's format.

    make submit EXP=exp001 [ARGS="submit.format=label|proba"]     # python -m <package> submit --exp exp001

The layout rules (class columns, a label column, probabilities, rounded grades): data/submission.py.
"""
from __future__ import annotations

import pandas as pd

from .core.atomic import write_csv
from .core.cli import run_stage
from .core.errors import DataError
from .core.rundir import RunPaths, open_run
from .data.files import load_sample_submission
from .data.submission import build_submission


def run(exp: str | None, overrides: list[str]) -> pd.DataFrame:
    cfg, paths, label_map = open_run(exp, overrides, "submit")
    preds = pd.read_csv(paths.require(paths.test_preds, "predict"), dtype={cfg.data.id_col: str})
    cols = [c for c in preds.columns if c != cfg.data.id_col]
    if cols != label_map.pred_cols:  # predictions made under another label map would fill the wrong columns
        raise DataError(f"{paths.test_preds} holds columns {cols[:10]}, {paths.labels} predicts "
                        f"{label_map.pred_cols[:10]}; re-run make predict EXP={paths.exp}")
    sample = load_sample_submission(cfg)
    sub = build_submission(cfg, label_map, preds, sample)
    out = RunPaths(cfg).submission
    write_csv(out, sub)
    print(f"submission written: {out} ({len(sub)} rows, columns {list(sub.columns)})")
    return sub


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
