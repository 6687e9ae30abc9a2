"""Submission formats: exactly the sample's ids, order and columns, labels mapped back."""
import numpy as np
import pandas as pd
import pytest

from helpers import mod

config, submit, targets = mod("core.config"), mod("data.submission"), mod("core.labels")
DataError = mod("core.errors").DataError


def _case(problem, classes_or_cols, metric, *extra):
    cfg = config.load("demo", [f"problem={problem}", f"metric={metric}", *extra])
    if problem in ("binary", "multiclass"):
        label_map = targets.LabelMap(problem, ["label"], classes=classes_or_cols)
    else:
        label_map = targets.LabelMap(problem, classes_or_cols, mean=[0.0] * 2, std=[1.0] * 2)
    return cfg, label_map


def _preds(ids, cols, values):
    df = pd.DataFrame(values, columns=cols)
    df.insert(0, "id", ids)
    return df


def test_labels_map_back_to_original_strings_in_sample_order(workdir):
    cfg, label_map = _case("multiclass", ["bird", "cat", "dog"], "accuracy")
    preds = _preds(["x", "y", "z"], label_map.pred_cols, np.eye(3)[[2, 0, 1]])
    sample = pd.DataFrame({"id": ["z", "x", "y"], "label": ["?", "?", "?"]})
    sub = submit.build_submission(cfg, label_map, preds, sample)
    assert sub.columns.tolist() == ["id", "label"]
    assert sub["id"].tolist() == ["z", "x", "y"] and sub["label"].tolist() == ["cat", "dog", "bird"]


def test_sample_with_a_column_per_class_gets_probabilities(workdir):
    cfg, label_map = _case("multiclass", ["a", "b", "c"], "log_loss")
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    sample = pd.DataFrame({"id": ["q", "p"], "c": 0.0, "a": 0.0, "b": 0.0})
    sub = submit.build_submission(cfg, label_map, _preds(["p", "q"], label_map.pred_cols, probs), sample)
    assert sub.columns.tolist() == ["id", "c", "a", "b"]
    assert np.allclose(sub[["a", "b", "c"]].to_numpy(), probs[[1, 0]])


def test_binary_with_auc_submits_the_positive_probability_and_accuracy_the_label(workdir):
    probs = np.array([[0.3, 0.7], [0.9, 0.1]])
    sample = pd.DataFrame({"id": ["p", "q"], "label": [0, 0]})
    cfg, label_map = _case("binary", ["0", "1"], "roc_auc")
    sub = submit.build_submission(cfg, label_map, _preds(["p", "q"], label_map.pred_cols, probs), sample)
    assert np.allclose(sub["label"], [0.7, 0.1])
    cfg, label_map = _case("binary", ["0", "1"], "accuracy")
    sub = submit.build_submission(cfg, label_map, _preds(["p", "q"], label_map.pred_cols, probs), sample)
    assert sub["label"].tolist() == ["1", "0"]


def test_multilabel_thresholds_for_label_metrics(workdir):
    cfg, label_map = _case("multilabel", ["t0", "t1"], "f1_macro", "data.target_cols=[t0,t1]")
    preds = _preds(["p"], ["t0", "t1"], np.array([[0.7, 0.2]]))
    sub = submit.build_submission(cfg, label_map, preds, pd.DataFrame({"id": ["p"], "t0": [0], "t1": [0]}))
    assert sub[["t0", "t1"]].to_numpy().tolist() == [[1, 0]]


def test_ids_that_differ_from_the_sample_are_refused(workdir):
    cfg, label_map = _case("multiclass", ["a", "b"], "accuracy")
    preds = _preds(["p", "q"], label_map.pred_cols, np.eye(2))
    with pytest.raises(DataError, match="different ids"):
        submit.build_submission(cfg, label_map, preds, pd.DataFrame({"id": ["p", "zz"], "label": ["a", "a"]}))


def test_columns_the_experiment_cannot_fill_are_refused(workdir):
    cfg, label_map = _case("multiclass", ["a", "b"], "accuracy")
    preds = _preds(["p"], label_map.pred_cols, np.eye(2)[:1])
    with pytest.raises(DataError, match=r"columns \['score'\]"):
        submit.build_submission(cfg, label_map, preds, pd.DataFrame({"id": ["p"], "score": [0]}))


def test_qwk_regression_submits_rounded_grades_inside_the_training_range(workdir):
    cfg = config.load("demo", ["problem=regression", "metric=qwk", "data.target_cols=[score]"])
    label_map = targets.LabelMap("regression", ["score"], mean=[2.0], std=[1.0], low=[1.0], high=[4.0])
    preds = _preds(["p", "q", "r"], ["score"], np.array([[0.2], [2.6], [5.7]]))
    sub = submit.build_submission(cfg, label_map, preds, pd.DataFrame({"id": ["p", "q", "r"], "score": [0, 0, 0]}))
    assert sub["score"].tolist() == [1, 3, 4]
