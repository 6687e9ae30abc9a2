"""make submit: outputs/<exp>/test_preds.csv -> submissions/<exp>.csv in exactly sample_submission.csv's format.

    make submit EXP=exp001 [ARGS="submit.format=label|proba"]     # python -m <package> submit --exp exp001

The layout rules (class columns, a label column, probabilities, rounded grades): data/submission.py.
With post.method: test_post.csv (test_preds.csv post-processed with the parameters fitted on all OOF rows,
fitted now when post.json is missing or stale) is what is submitted (inference/postrun.py).
"""
from __future__ import annotations

import pandas as pd

from .core.atomic import write_csv
from .core.cli import run_stage
from .core.rundir import RunPaths, open_run
from .data.submission import submission_from_preds
from .inference.postrun import check, post_test


def run(exp: str | None, overrides: list[str]) -> pd.DataFrame:
    cfg, paths, label_map = open_run(exp, overrides, "submit")
    preds_file = paths.require(paths.test_preds, "predict")
    check(cfg)
    if cfg.post.method != "none":
        preds_file = post_test(cfg, paths, label_map)
    elif paths.post.is_file():  # fitted by an earlier make predict / submit: say it is not used
        print(f"note: {paths.post} exists but post.method=none: the submission is not post-processed "
              f"(pass ARGS=\"post.method=...\" to use it)")
    sub = submission_from_preds(cfg, label_map, preds_file, f"re-run make predict EXP={paths.exp}")
    out = RunPaths(cfg).submission
    write_csv(out, sub)
    print(f"submission written: {out} ({len(sub)} rows, columns {list(sub.columns)})")
    return sub


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
