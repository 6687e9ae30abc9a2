"""make leaderboard BASE=<exp>: experiments on the base's folds get the paired fold differences, their standard
error and a bootstrap interval over OOF rows; a copy of the base is within noise, a clearly better run is not,
and runs on other folds say why they have no interval. Runs are written by hand (no training)."""
import numpy as np
import pandas as pd
import pytest

from helpers import mod, run_cli
from runs import Competition

noise, metrics = mod("core.noise"), mod("core.metrics")
rng = np.random.default_rng(1)


@pytest.fixture
def comp(tiny, demo_dir, workdir):
    return Competition(tiny, demo_dir / "solution.csv")


def board(capsys) -> pd.DataFrame:
    assert run_cli("leaderboard", "--base", "base") == 0, capsys.readouterr().err
    return pd.read_csv("outputs/leaderboard.csv", keep_default_na=False).set_index("exp")


def test_a_copy_is_within_noise_a_clearly_better_run_is_not_and_other_folds_say_why(comp, capsys):
    weak = comp.noisy(comp.y, 1.0, 1.5)
    comp.run("base", weak)
    comp.run("copy", weak.copy())
    comp.run("better", comp.noisy(comp.y, 4.0, 0.5))
    other = comp.folds.assign(fold=np.roll(comp.fold, 7))
    comp.run("shuffled", weak.copy(), folds=other)
    table = board(capsys)
    out = capsys.readouterr().out
    assert {"delta", "delta_se", "fold_deltas", "ci_low", "ci_high", "within_noise", "noise_note", "cv_post",
            "cv", "differs"} <= set(table.columns)
    copy, better = table.loc["copy"], table.loc["better"]
    assert float(copy["delta"]) == 0 and float(copy["ci_low"]) == 0 == float(copy["ci_high"])
    assert copy["within_noise"] == "yes"
    higher = metrics.METRICS[comp.cfg.metric].greater_is_better
    assert better["within_noise"] == "no"
    assert (float(better["ci_low"]) > 0) if higher else (float(better["ci_high"]) < 0)
    assert len(better["fold_deltas"].split()) == comp.cfg.train.n_folds and float(better["delta_se"]) > 0
    assert table.loc["base", "within_noise"] == "(base)"
    assert table.loc["shuffled", "within_noise"] == "" and "other folds" in table.loc["shuffled", "noise_note"]
    assert "within noise" in out and "other folds" in out


def test_without_a_base_the_noise_columns_are_empty(comp, capsys):
    comp.run("base", comp.noisy(comp.y, 1.0, 1.5))
    assert run_cli("leaderboard") == 0
    table = pd.read_csv("outputs/leaderboard.csv", keep_default_na=False)
    assert (table["within_noise"] == "").all() and "within noise" not in capsys.readouterr().out


@pytest.mark.parametrize("metric, problem", [
    ("accuracy", "multiclass"), ("f1_macro", "multiclass"), ("mcc", "multiclass"), ("qwk", "multiclass"),
    ("f1", "binary"), ("mcc", "binary"), ("log_loss", "multiclass"), ("roc_auc", "binary"),
    ("rmse", "regression"), ("mae", "regression"), ("r2", "regression"), ("qwk", "regression"),
    ("log_loss", "multilabel"), ("f1_macro", "multilabel")])
def test_the_vectorised_resample_scores_are_the_metric_itself(metric, problem):
    n = 400
    if problem == "regression":
        y = rng.integers(0, 5, (n, 1)).astype(float)
        p = y + rng.standard_normal((n, 1))
    elif problem == "multilabel":
        y = (rng.random((n, 3)) < 0.4).astype(float)
        p = 1 / (1 + np.exp(-(2 * y - 1 + rng.standard_normal((n, 3)))))
    else:
        k = 2 if problem == "binary" else 4
        y = rng.integers(0, k, n)
        z = np.eye(k)[y] + rng.standard_normal((n, k))
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    idx = np.vstack([np.arange(n), rng.integers(0, n, (3, n))])
    got = noise.resample_scores(metric, problem, y, p, idx)
    want = [metrics.score(metric, problem, y[i], p[i]) for i in idx]
    assert np.allclose(got, want, atol=1e-9)


def test_the_bootstrap_is_paired_and_seeded():
    y = rng.integers(0, 2, 500)
    p = np.stack([1 - (q := rng.random(500)), q], 1)
    assert noise.paired_bootstrap("accuracy", "binary", y, p, p) == (0.0, 0.0, 0.0)
    a = noise.paired_bootstrap("accuracy", "binary", y, p, p[::-1])
    assert a == noise.paired_bootstrap("accuracy", "binary", y, p, p[::-1]) and a[1] < a[0] < a[2]
    deltas, mean, se = noise.fold_deltas({0: 0.8, 1: 0.9, 2: 0.7}, {0: 0.7, 1: 0.8, 2: 0.8, 3: 0.5})
    assert np.allclose(deltas, [0.1, 0.1, -0.1]) and np.isclose(mean, 0.1 / 3)
    assert np.isclose(se, np.std([0.1, 0.1, -0.1], ddof=1) / np.sqrt(3))
