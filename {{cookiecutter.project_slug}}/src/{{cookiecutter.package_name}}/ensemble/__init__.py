"""Ensembling: finished experiments combined into a new experiment, cross-validated like any other.

    make ensemble EXPS="exp001 exp002 exp003" NAME=ens01 ARGS="ensemble.method=hill"
    python -m <package> ensemble --name ens01 --exps "exp001 exp002" ensemble.method=stack
    make submit EXP=ens01

A member is any outputs/<m>/ with config.yaml, labels.json, folds.csv, oof_preds.csv, cv.json and
test_preds.csv: a trained and predicted experiment, or another ensemble. A full-fit run (cv.json "kind")
is fitted on its CV run's OOF (cv.json "cv_source"), its own test_preds.csv is combined. Members must share
the problem, label map, metric, train and test ids (same order) and folds, or nothing is written. The config
is the first member's; `ensemble:` and `overwrite` come from configs/default.yaml < configs/<name>.yaml < ARGS.

ensemble.method
  mean      arithmetic mean
  weighted  weights >= 0 summing to 1 that optimise the OOF metric (SLSQP from uniform; uniform is kept
            when the optimum is no better, as with step-like metrics such as accuracy: use hill there)
  hill      Caruana: from the best member, add (with replacement) the member that most improves the OOF
            metric, at most ensemble.hill_iters times, stopping when nothing improves; weights = counts
  rank      per-column ranks scaled to [0, 1], averaged: for roc_auc (calibration is lost)
  gmean     geometric mean of probabilities, renormalised (not for regression)
  stack     a scikit-learn meta-model on the members' OOF predictions (logits of probabilities), built from
            ensemble.meta_model (import path; "" = LogisticRegression, Ridge for regression; one per target
            column for multilabel / regression) and ensemble.meta_params

Honest CV: weights and meta-models are fitted for each fold k on the other folds' OOF rows and predict
fold k, so oof_preds.csv is out-of-fold and cv.json "cv" scores it; "cv_in_sample" (fitted and scored on
all OOF rows) is optimistic, for comparison. Test uses the weights fitted on all OOF rows (stack: the mean
of the fold meta-models). Only folds that every member ran are used. The methods and the per-fold fitting
are in blend.py, reading and checking the members in members.py; this module writes the run.

Writes outputs/<name>/: config.yaml, labels.json, folds.csv, oof_preds.csv, test_preds.csv, train.log,
post.json + test_post.csv (with post.method: post-processing fitted out of fold on the ensemble's OOF),
oof_corr.png (members' OOF correlation), meta_models.pkl (stack: the fold meta-models), cv.json ("kind": "ensemble", cv, cv_in_sample, members' cv on the
same rows, weights
and fold_weights or meta-model coefficients, oof_from, per-fold scores).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_csv, write_json, write_text, write_with
from ..core.cli import run_stage
from ..core.config import dump, load, parse_overrides
from ..core.errors import ConfigError, DataError
from ..core.metrics import METRICS, score
from ..core.lock import hold
from ..core.labels import LabelMap
from ..core.records import finish_record, start_record
from ..core.rundir import RunPaths, create_run_dir, get_logger, outputs_root, refuse_existing
from ..core.schema import Config
from ..data.files import data_path, load_train
from ..inference.combine import save_meta_models
from ..inference.postrun import check as check_post, post_test
from ..reporting import refresh
from .blend import cross_fit, meta_estimator
from .members import check_members, read_member


def corr_png(names: list[str], P: np.ndarray, problem: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corr = np.corrcoef((P[:, :, 1] if problem == "binary" else P).reshape(len(P), -1))
    side = 2.5 + 0.5 * len(names)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    fig.colorbar(ax.imshow(corr, cmap="viridis"), ax=ax)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 15:  # beyond that the numbers overlap; the colours still read
        mid = (np.nanmin(corr) + np.nanmax(corr)) / 2
        for (i, j), v in np.ndenumerate(corr):  # dark text on viridis' bright end
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="k" if v > mid else "w", fontsize=8)
    ax.set_title("members' OOF correlation")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def open_ensemble(name: str | None, exps: str | None, overrides: list[str]) -> tuple[Config, Path]:
    members = exps.replace(",", " ").split() if exps else \
        list(parse_overrides(overrides).get("ensemble", {}).get("members") or [])
    if not name or name.startswith("-") or "=" in name:
        raise ConfigError('name the ensemble: make ensemble NAME=<ens> EXPS="exp001 exp002"')
    if len(members) < 2 or len(set(members)) < len(members) or name in members:
        raise ConfigError(f"an ensemble needs two or more distinct members other than itself ('{name}'), got "
                          f"{members}: make ensemble NAME={name} EXPS=\"exp001 exp002\"")
    root = outputs_root(overrides)
    first = root / members[0] / "config.yaml"
    if not first.exists():
        raise ConfigError(f"ensemble member '{members[0]}': {first} does not exist; run `make train "
                          f"EXP={members[0]}` first")
    cfg = load(name, overrides, base=first)
    # The first member may be an ensemble, or saved with overwrite=true: those two are this run's own.
    own = load(name, [o for o in overrides if o.startswith(("ensemble.", "overwrite=", "post."))])
    cfg.ensemble, cfg.overwrite, cfg.paths.outputs = own.ensemble, own.overwrite, str(root)
    cfg.post = own.post  # a member's post-processing is not the ensemble's
    check_post(cfg)
    cfg.ensemble.members = members
    if cfg.ensemble.method == "gmean" and cfg.problem == "regression":
        raise ConfigError("config key 'ensemble.method' gmean needs probabilities; for regression use mean, "
                          "weighted, hill or stack")
    if cfg.ensemble.method == "stack":
        meta_estimator(cfg)  # a bad import path fails before any file is read
    return cfg, root


def run(exp: str | None, overrides: list[str], name: str | None = None, exps: str | None = None) -> dict:
    """EXP plays no part: the ensemble is named by --name (NAME=) and its members by --exps (EXPS=)."""
    cfg, root = open_ensemble(name, exps, overrides)
    with hold(root / cfg.exp, "ensemble"):
        result = write_ensemble(cfg, root, overrides)
        if cfg.post.method != "none":  # fitted on the ensemble's own (out-of-fold) OOF, like any run's
            paths = RunPaths(cfg)
            post_test(cfg, paths, LabelMap.load(paths.labels))
        return result


def write_ensemble(cfg: Config, root: Path, overrides: list[str]) -> dict:
    paths, names, method, problem, id_col = RunPaths(cfg), cfg.ensemble.members, cfg.ensemble.method, \
        cfg.problem, cfg.data.id_col
    refuse_existing(paths, cfg.overwrite)  # before any work
    train = load_train(cfg)
    train_ids = train[id_col].tolist()
    ms = [read_member(root, m, id_col) for m in names]
    fold = check_members(ms, cfg, root, train_ids, "metric" in parse_overrides(overrides))
    label_map = ms[0].label_map
    y = label_map.encode(train, id_col, cfg.data.train_file)
    P = np.stack([m.oof[label_map.pred_cols].to_numpy(np.float64) for m in ms])
    T = np.stack([m.test[label_map.pred_cols].to_numpy(np.float64) for m in ms])
    folds_run = sorted(set.intersection(*(set(m.folds_run) for m in ms)))
    covered = np.isin(fold, folds_run) & ~np.isnan(P).any(axis=(0, 2))
    if not covered.any():
        raise DataError("the members share no fold: " + ", ".join(f"'{m.name}' ran {m.folds_run}" for m in ms))
    notes = [f"ensemble {cfg.exp}: {method} of {names}, {cfg.metric} on {covered.sum()} of {len(train)} rows, "
             f"folds {folds_run}" + (" (those every member ran)" if any(sorted(m.folds_run) != folds_run
                                                                         for m in ms) else "")]
    notes += [f"member '{m.name}' is a full-fit run: fitted on the OOF of '{m.oof_from}', its own test predictions "
              f"combined" for m in ms if m.oof_from != m.name]
    if method == "rank" and cfg.metric != "roc_auc":
        notes.append(f"warning: rank averaging discards calibration; it suits roc_auc, the metric here is {cfg.metric}")

    oof, test, info, meta_models = cross_fit(cfg, label_map, P, T, y, fold, covered, folds_run)
    on = lambda rows, p: score(cfg.metric, problem, y[rows], p[rows])  # noqa: E731
    result = {"kind": "ensemble", "metric": cfg.metric, "cv": on(covered, oof), **info, "method": method,
              "greater_is_better": METRICS[cfg.metric].greater_is_better,
              "members": {m.name: on(covered, P[i]) for i, m in enumerate(ms)},
              "oof_from": {m.name: m.oof_from for m in ms},
              "folds": [on(covered & (fold == k), oof) for k in folds_run],
              "folds_run": folds_run, "n_folds": ms[0].n_folds, "rows": int(covered.sum())}
    png = corr_png(names, P[:, covered], problem)

    create_run_dir(paths, cfg.overwrite)  # every check has passed: from here on, only writes
    frame = lambda ids, v: pd.DataFrame({id_col: ids, **dict(zip(label_map.pred_cols, v.T))})  # noqa: E731
    write_text(paths.config, dump(cfg))
    start_record(paths, data_files=[data_path(cfg, cfg.data.train_file)])
    label_map.save(paths.labels)
    write_csv(paths.folds, pd.DataFrame({id_col: train_ids, "fold": fold}))
    write_csv(paths.oof, frame(train_ids, oof))
    write_csv(paths.test_preds, frame(ms[0].test[id_col].to_numpy(), test))
    write_with(paths.corr_plot, lambda p: p.write_bytes(png))
    if meta_models is not None:  # what a code-competition bundle needs to predict test like this run
        write_with(paths.meta_models, lambda p: save_meta_models(p, meta_models))
    finish_record(paths, status="finished", cv=result["cv"])
    write_json(paths.cv, result)  # last: its presence marks a finished ensemble
    log = get_logger(paths.log)
    for line in notes + summary(result):
        log.info(line)
    refresh(paths, cfg)  # report.html: members, weights, OOF analysis
    return result


def summary(result: dict) -> list[str]:
    """The members against the ensemble, one line each."""
    weights = result.get("weights", {})
    rows = [(m, s, f"weight {weights[m]:.3f}" if m in weights else "") for m, s in result["members"].items()]
    rows.append((f"ensemble ({result['method']})", result["cv"], "out-of-fold CV"))
    if "cv_in_sample" in result:
        rows.append(("fitted in-sample", result["cv_in_sample"], "optimistic: scored on the rows it was fitted on"))
    width = max(len(r[0]) for r in rows)
    return [f"{label:<{width}}  {result['metric']} {s:.5f}  {extra}" for label, s, extra in rows]


def main(argv=None):
    # --exps first: with NAME empty, `--name --exps "a b"` must not eat --exps
    run_stage(run, argv, options=("--exps", "--name"))


if __name__ == "__main__":
    main()
