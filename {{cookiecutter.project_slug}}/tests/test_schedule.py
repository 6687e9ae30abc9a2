"""train.eval_every and train.patience: evaluations every N optimiser steps (inside epochs too), the best of
them gives best.pt and the OOF, a fold stops after N evaluations without improvement, and a run killed
between evaluations resumes to the uninterrupted result."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import PROJECT, like_demo, mod, run_cli
from test_resume import KILLED, crash

config, kfold, metrics = mod("core.config"), mod("training.kfold"), mod("core.metrics")
TASK = config.load(config_dir=PROJECT / "configs").task
BATCH = 32  # configs/demo.yaml


def _steps_per_epoch(run) -> int:
    folds = pd.read_csv(run / "folds.csv")
    return int((folds["fold"] != 0).sum()) // BATCH  # the training loader drops its last, incomplete batch


def _history(run) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv", float_precision="round_trip")


def _best_row(hist: pd.DataFrame, metric: str) -> pd.Series:
    """The first evaluation with the best score (a later equal one is no improvement)."""
    best = hist["score"].max() if metrics.METRICS[metric].greater_is_better else hist["score"].min()
    return hist[hist["score"] == best].iloc[0]


@pytest.mark.slow
def test_evaluations_every_n_steps_and_the_best_one_is_the_checkpoint_and_the_oof(tiny, workdir):
    like_demo("ev")
    args = [*tiny, "train.folds=[0]", "train.epochs=2", "train.eval_every=3"]
    assert run_cli("train", "--exp", "ev", *args) == 0
    run = workdir / "outputs" / "ev"
    per_epoch, hist = _steps_per_epoch(run), _history(run)
    total = 2 * per_epoch
    expected = list(range(3, total + 1, 3)) + ([total] if total % 3 else [])
    assert hist["step"].tolist() == expected  # inside the epochs, and the last step
    assert hist["epoch"].tolist() == [round(s / per_epoch, 4) for s in expected]
    assert {"fold", "epoch", "step", "train_loss", "valid_loss", "score", "lr", "seconds"} <= set(hist.columns)

    metric = json.loads((run / "cv.json").read_text())["metric"]
    best = _best_row(hist, metric)
    saved = torch.load(run / "fold0" / "best.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == best["step"] and saved["score"] == best["score"] and saved["epoch"] == best["epoch"]
    cv = json.loads((run / "cv.json").read_text())
    assert cv["folds"] == [best["score"]] and cv["best_epochs"] == [best["epoch"]]
    # the OOF predicted again from best.pt scores what that evaluation scored
    assert run_cli("predict", "--exp", "ev", "tta.oof=true") == 0
    again = json.loads((run / "cv.json").read_text())
    assert again["folds"][0] == pytest.approx(best["score"], rel=1e-9, abs=1e-12)


def _scripted_scores(monkeypatch, metric: str, values: list[float]) -> None:
    """The validation scores of the next evaluations (greater = better, flipped for a lower-is-better metric)."""
    sign = 1.0 if metrics.METRICS[metric].greater_is_better else -1.0
    left, real = [sign * v for v in values], kfold.score
    monkeypatch.setattr(kfold, "score", lambda *a: left.pop(0) if left else real(*a))


@pytest.mark.slow
def test_patience_stops_a_fold_after_n_evaluations_without_a_better_score(tiny, workdir, monkeypatch):
    like_demo("pat")
    metric = config.load("pat", tiny).metric
    _scripted_scores(monkeypatch, metric, [1.0, 0.0, 2.0, 0.0, 2.0])  # best, worse, best, worse, equal: stop
    assert run_cli("train", "--exp", "pat", *tiny, "train.folds=[0]", "train.epochs=3", "train.eval_every=2",
                   "train.patience=2") == 0
    run = workdir / "outputs" / "pat"
    hist = _history(run)
    assert hist["step"].tolist() == [2, 4, 6, 8, 10]  # of 3 epochs' steps, stopped inside the first or second
    saved = torch.load(run / "fold0" / "best.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == 6
    assert json.loads((run / "fold0" / "done.json").read_text())["best_epoch"] == hist["epoch"].iloc[2]
    assert not (run / "fold0" / "last.pt").exists()
    assert "train.patience" in (run / "train.log").read_text()


@pytest.mark.slow
def test_patience_counts_epochs_when_evaluating_once_per_epoch(tiny, workdir, monkeypatch):
    like_demo("pate")
    metric = config.load("pate", tiny).metric
    _scripted_scores(monkeypatch, metric, [1.0, 0.5])
    assert run_cli("train", "--exp", "pate", *tiny, "train.folds=[0]", "train.epochs=4", "train.patience=1") == 0
    hist = _history(workdir / "outputs" / "pate")
    assert hist["epoch"].tolist() == [1, 2] and "step" not in hist.columns  # the default history, cut short


# (train.eval_every, crash point E:S = batch S of the E-th epoch run, train.save_every): the last resume point is
# inside epoch 1 (step 4), inside epoch 1 before an epoch boundary (step 8), at epoch 1's last batch (step 10 of
# 10), or, with a resume point at every 2nd evaluation (steps 8 and 16), at step 8 although step 12 was evaluated
CRASHES = [(4, "1:6", 1), (4, "2:3", 1), (5, "2:3", 1), (4, "2:5", 2)]


def _last_saved_step(every: int, point: str, save_every: int, per_epoch: int = 10) -> int:
    """The optimiser step of the newest resume point when batch S of epoch E is about to run."""
    epoch, batch = map(int, point.split(":"))
    done = (epoch - 1) * per_epoch + batch - 1
    return max(n * every for n in range(1, done // every + 1) if n % save_every == 0)


@pytest.mark.slow
@pytest.mark.parametrize("every, point, save_every", CRASHES)
def test_a_run_killed_between_evaluations_resumes_to_the_uninterrupted_result(tiny, workdir, every, point,
                                                                             save_every):
    base = [*tiny, "train.folds=[0]", "train.epochs=2", f"train.eval_every={every}", "ema.enabled=true",
            "ema.decay=0.9"]
    if TASK == "image":  # augmentations draw from the RNG the resume must put back
        base.append("aug.train=[{name: HorizontalFlip, p: 0.5}, {name: RandomBrightnessContrast, p: 0.5}]")
    args = [*base, f"train.save_every={save_every}"]
    like_demo("ref", "cut")
    assert run_cli("train", "--exp", "ref", *base) == 0  # every evaluation a resume point: the same numbers
    ref, cut = workdir / "outputs" / "ref", workdir / "outputs" / "cut"
    assert _steps_per_epoch(ref) == 10, "the crash points assume 10 steps per epoch"
    done = crash(workdir, "step", point, "cut", args)
    assert done.returncode == KILLED, done.stderr[-3000:]
    assert not (cut / "cv.json").exists()
    saved = torch.load(cut / "fold0" / "last.pt", map_location="cpu", weights_only=False)
    assert saved["step"] == _last_saved_step(every, point, save_every)
    # best.pt on disk never comes from an evaluation after the resume point (it is written with the points)
    best = torch.load(cut / "fold0" / "best.pt", map_location="cpu", weights_only=False)
    assert best["step"] <= saved["step"] and best["score"] == saved["best"]["score"]
    assert run_cli("train", "--exp", "cut", "--resume", *args) == 0
    assert (cut / "oof_preds.csv").read_bytes() == (ref / "oof_preds.csv").read_bytes()
    got, want = (_history(r).drop(columns="seconds") for r in (cut, ref))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    weights = [torch.load(r / "fold0" / "best.pt", map_location="cpu", weights_only=False)["model"] for r in (cut, ref)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


@pytest.mark.parametrize("key", ["train.eval_every=10", "train.patience=2"])
def test_eval_every_and_patience_with_swa_are_refused_naming_the_key(workdir, key):
    with pytest.raises(config.ConfigError, match=f"'{key.split('=')[0]}'.*swa"):
        config.load("demo", [key, "swa.enabled=true"])
    with pytest.raises(config.ConfigError, match=f"'{key.split('=')[0]}' must be >= 0"):
        config.load("demo", [f"{key.split('=')[0]}=-1"])
    assert np.isfinite(config.load("demo", [key]).train.epochs)


def test_save_every_below_one_is_refused_naming_the_key(workdir):
    with pytest.raises(config.ConfigError, match="'train.save_every' must be >= 1, got 0"):
        config.load("demo", ["train.save_every=0"])
    assert config.load("demo", ["train.save_every=3"]).train.save_every == 3
