"""make predict: every fold's best checkpoint (or a full fit's seed models) on test.csv, averaged; with
test-time augmentation if asked.

    make predict EXP=exp001                                                   # python -m <package> predict
    make predict EXP=exp001 ARGS="tta.views=[identity,hflip] tta.oof=true"    # OOF and CV with the same views

Writes outputs/<exp>/fold<k>/test_preds.csv, test_preds.csv and predict.json; with tta.oof=true also
rewrites oof_preds.csv and cv.json (keeping the training-time ones). How: inference/predictor.py.
With post.method (README: Post-processing) also post.json, test_post.csv and cv.json cv_post: the
post-processing fitted out of fold on the OOF (inference/postrun.py).
"""
from __future__ import annotations

from .core.cli import run_stage
from .core.lock import hold
from .core.rundir import open_run, outputs_root
from .inference.postrun import check, post_test
from .inference.predictor import predict_test


def run(exp: str | None, overrides: list[str]) -> None:
    if not exp:
        predict_test(exp, overrides)  # says to name the experiment
        return
    with hold(outputs_root(overrides) / exp, "predict"):  # no second writer of outputs/<exp>/
        cfg, paths, label_map = open_run(exp, overrides, "predict")
        check(cfg)  # a post.method that cannot suit the metric fails before the models run
        predict_test(exp, overrides)
        if cfg.post.method != "none":
            print(f"post-processed test predictions: {post_test(cfg, paths, label_map)}")


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
