"""Post-processing (post.method): each method corrects what it is for, a fit on the scored rows inflates the CV
while the out-of-fold fit does not, and predict / submit / ensemble use it. Predictions are synthetic."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import mod, run_cli
from runs import Competition

pp, metrics = mod("inference.postprocess"), mod("core.metrics")
ConfigError = mod("core.errors").ConfigError
rng = np.random.default_rng(0)
# the method and a hard-label metric for each problem
FOR_PROBLEM = {"binary": ("threshold", "f1"), "multiclass": ("prior", "accuracy"),
               "multilabel": ("class_thresholds", "f1_macro"), "regression": ("rounder", "qwk")}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_threshold_moves_the_cut_off_of_a_timid_binary_model_and_raises_f1():
    y = (rng.random(2000) < 0.15).astype(int)
    p1 = sigmoid(2.0 * (2 * y - 1) + rng.standard_normal(2000) - 2.5)  # rarely above 0.5
    P = np.stack([1 - p1, p1], 1)
    params = pp.fit("threshold", "f1", "binary", P, y)
    post = pp.apply("threshold", P, params)
    assert params["threshold"] < 0.4
    assert metrics.score("f1", "binary", y, post) > metrics.score("f1", "binary", y, P) + 0.1
    assert np.array_equal(post.argmax(1), (p1 >= params["threshold"]).astype(int))  # a cut-off, nothing else
    assert np.allclose(post.sum(1), 1)


def test_class_thresholds_fit_each_column_to_its_own_bias():
    y = (rng.random((2000, 3)) < 0.3).astype(float)
    bias = np.array([-2.0, 0.0, 2.0])
    P = sigmoid(2.0 * (2 * y - 1) + rng.standard_normal(y.shape) + bias)
    params = pp.fit("class_thresholds", "f1_macro", "multilabel", P, y)
    t = np.array(params["thresholds"])
    assert t[0] < t[1] < t[2]
    post = pp.apply("class_thresholds", P, params)
    assert np.array_equal(post >= 0.5, P >= t)
    assert metrics.score("f1_macro", "multilabel", y, post) > metrics.score("f1_macro", "multilabel", y, P) + 0.05


def test_prior_offsets_undo_a_bias_toward_one_class():
    y = rng.integers(0, 4, 2000)
    logits = 1.5 * np.eye(4)[y] + rng.standard_normal((2000, 4))
    logits[:, 0] += 1.5  # the model over-predicts class 0
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    params = pp.fit("prior", "accuracy", "multiclass", P, y)
    post = pp.apply("prior", P, params)
    assert params["offsets"][0] == 0 and min(params["offsets"][1:]) > 0.5  # the others are raised
    assert np.allclose(post.sum(1), 1)
    assert metrics.score("accuracy", "multiclass", y, post) > metrics.score("accuracy", "multiclass", y, P) + 0.05


def test_rounder_cut_points_beat_plain_rounding_of_a_shrunk_regression():
    y = rng.integers(0, 6, 2000).astype(float)[:, None]
    P = 2.5 + 0.4 * (y - 2.5) + 0.3 * rng.standard_normal(y.shape)  # shrunk toward the mean, as MSE does
    params = pp.fit("rounder", "qwk", "regression", P, y, grades=[(0, 5)])
    post = pp.apply("rounder", P, params)
    assert np.all(np.diff(params["cuts"][0]) > 0)
    assert set(np.unique(post)) <= set(range(6))
    assert metrics.score("qwk", "regression", y, post) > metrics.score("qwk", "regression", y, P) + 0.05


def test_an_in_sample_fit_inflates_the_cv_of_pure_noise_and_the_out_of_fold_fit_does_not():
    """Ten classes, 300 rows, predictions unrelated to the truth: nine offsets fitted on the scored rows find
    'signal' in the noise; fitted on the other folds they do not carry over."""
    n, c = 300, 10
    y = rng.integers(0, c, n)
    P = rng.dirichlet(np.ones(c), n)
    fold = np.arange(n) % 5
    _, info = pp.cross_fit("prior", "accuracy", "multiclass", P, y, fold, np.ones(n, bool), list(range(5)))
    assert info["cv_post_in_sample"] > info["cv"] + 0.04  # the optimistic figure
    assert info["cv_post"] < info["cv_post_in_sample"] - 0.03
    assert info["cv_post"] < 1 / c + 0.04  # still chance, as it must be on noise
    assert len(info["fold_params"]) == 5 and info["params"] != info["fold_params"]["0"]


@pytest.mark.parametrize("method, problem, metric", [
    ("threshold", "multiclass", "accuracy"), ("threshold", "binary", "roc_auc"), ("rounder", "regression", "rmse"),
    ("prior", "binary", "f1"), ("class_thresholds", "multilabel", "log_loss")])
def test_a_method_that_cannot_suit_the_problem_or_metric_is_refused(method, problem, metric):
    with pytest.raises(ConfigError, match="post.method"):
        pp.check_post(method, problem, metric)


# ---- the stages, on a run written by hand ------------------------------------------------------------
@pytest.fixture
def comp(tiny, demo_dir, workdir):
    return Competition(tiny, demo_dir / "solution.csv")


def biased(comp):
    """OOF and test predictions with a bias the baked problem's method can correct (strong for multiclass:
    nine offsets on a few hundred rows overfit a mild one, out of fold)."""
    shift = 2.5 if comp.problem == "multiclass" else 1.0
    return comp.noisy(comp.y, 2.0, 1.5, shift=shift), comp.noisy(comp.y_test, 2.0, 1.5, shift=shift)


def decided(comp, method, test, params):
    """The submission's values as the fitted parameters decide them, computed independently."""
    if method == "threshold":
        return np.array(comp.label_map.classes)[(test[:, 1] >= params["threshold"]).astype(int)]
    if method == "prior":
        return np.array(comp.label_map.classes)[(np.log(test) + params["offsets"]).argmax(1)]
    if method == "class_thresholds":
        return (test >= np.array(params["thresholds"])).astype(int)
    return params["low"][0] + np.searchsorted(params["cuts"][0], test[:, :1], side="right")


def test_submit_fits_out_of_fold_writes_cv_post_and_submits_the_post_processed_labels(comp, capsys):
    method, metric = FOR_PROBLEM[comp.problem]
    oof, test = biased(comp)
    run = comp.run("base", oof, test, metric=metric)
    assert run_cli("submit", "--exp", "base", *comp.overrides, f"post.method={method}") == 0, capsys.readouterr().err
    cv, post = json.loads((run / "cv.json").read_text()), json.loads((run / "post.json").read_text())
    assert cv["post_method"] == method and cv["cv_post"] == post["cv_post"]
    assert cv["cv_post_in_sample"] >= cv["cv_post"] - 0.02
    assert cv["cv_post"] > cv["cv"]  # the bias was worth correcting, out of fold too
    sub = pd.read_csv("submissions/base.csv", dtype={comp.id_col: str}).set_index(comp.id_col).loc[comp.test_ids]
    want = decided(comp, method, test, post["params"])
    cols = comp.label_map.target_cols
    got = sub[cols[0]].astype(str).to_numpy() if comp.problem in ("binary", "multiclass") else sub[cols].to_numpy()
    assert np.array_equal(got, want if comp.problem in ("binary", "multiclass") else want[:, :got.shape[1]])

    before = post["params"]  # a rewritten OOF makes post.json stale: the next submit fits again
    comp.frame(comp.train[comp.id_col], comp.noisy(comp.y, 2.0, 1.5, shift=-1.0)).to_csv(run / "oof_preds.csv",
                                                                                          index=False)
    assert run_cli("submit", "--exp", "base", *comp.overrides, f"post.method={method}") == 0
    assert json.loads((run / "post.json").read_text())["params"] != before
    assert run_cli("submit", "--exp", "base", *comp.overrides) == 0
    assert "post.method=none" in capsys.readouterr().out  # the fitted post.json is not used silently


def test_a_method_of_another_problem_stops_predict_and_submit_with_exit_2(comp, capsys):
    oof, test = biased(comp)
    comp.run("base", oof, test, metric=FOR_PROBLEM[comp.problem][1])
    wrong = next(m for p, (m, _) in FOR_PROBLEM.items() if p != comp.problem)
    for stage in ("predict", "submit"):
        assert run_cli(stage, "--exp", "base", *comp.overrides, f"post.method={wrong}") == 2
        assert "post.method" in capsys.readouterr().err
    assert not Path("outputs/base/post.json").exists() and not Path("submissions/base.csv").exists()


def test_an_ensemble_post_processes_its_own_out_of_fold_predictions(comp, capsys):
    method, metric = FOR_PROBLEM[comp.problem]
    for name in ("a", "b"):
        comp.run(name, *biased(comp), metric=metric)
    assert run_cli("ensemble", "--name", "ens", "--exps", "a b", *comp.overrides, "ensemble.method=mean",
                   f"post.method={method}") == 0, capsys.readouterr().err
    cv = json.loads(Path("outputs/ens/cv.json").read_text())
    assert cv["kind"] == "ensemble" and cv["post_method"] == method and cv["cv_post"] > cv["cv"]
    assert Path("outputs/ens/test_post.csv").is_file()
