"""Label maps, target encoding and metrics for every problem type."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from helpers import mod

targets, metrics = mod("core.labels"), mod("core.metrics")
DataError = mod("core.errors").DataError


def test_string_labels_map_to_indices_and_back():
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "y": ["cat", "dog", "cat", "bird"]})
    label_map = targets.LabelMap.fit("multiclass", ["y"], df, "id")
    assert label_map.classes == ["bird", "cat", "dog"]
    idx = label_map.encode(df, "id")
    assert idx.tolist() == [1, 2, 1, 0]
    assert label_map.labels_from_preds(np.eye(3)[idx]) == df["y"].tolist()


def test_integer_labels_keep_their_text_and_sort_numerically():
    df = pd.DataFrame({"id": list("abcd"), "y": ["10", "2", "1", "2"]})
    label_map = targets.LabelMap.fit("multiclass", ["y"], df, "id")
    assert label_map.classes == ["1", "2", "10"]


def test_binary_needs_exactly_two_labels():
    df = pd.DataFrame({"id": list("abc"), "y": ["x", "y", "z"]})
    with pytest.raises(DataError, match="exactly 2"):
        targets.LabelMap.fit("binary", ["y"], df, "id")


def test_label_outside_the_training_map_is_named():
    label_map = targets.LabelMap.fit("binary", ["y"], pd.DataFrame({"id": list("ab"), "y": ["0", "1"]}), "id")
    with pytest.raises(DataError, match=r"outside the training label map.*id=c"):
        label_map.encode(pd.DataFrame({"id": ["c"], "y": ["2"]}), "id", "pseudo.csv")


def test_regression_targets_are_standardised_for_training_and_restored_exactly():
    df = pd.DataFrame({"id": list("abcd"), "y": [1.0, 2.0, 3.0, 10.0], "z": [0.0, 0.0, 1.0, 1.0]})
    label_map = targets.LabelMap.fit("regression", ["y", "z"], df, "id")
    scaled = label_map.encode(df, "id", scaled=True)
    assert np.allclose(scaled.mean(0), 0, atol=1e-6) and np.allclose(scaled.std(0), 1, atol=1e-6)
    restored = label_map.activate(torch.tensor(scaled)).numpy()
    assert np.allclose(restored, df[["y", "z"]].to_numpy(), atol=1e-5)


def test_label_map_round_trips_through_json(tmp_path):
    df = pd.DataFrame({"id": list("abc"), "y": ["b", "a", "b"]})
    label_map = targets.LabelMap.fit("multiclass", ["y"], df, "id")
    label_map.save(tmp_path / "labels.json")
    assert targets.LabelMap.load(tmp_path / "labels.json") == label_map


def test_roc_auc_on_binary_scores_the_second_class_column():
    y = np.array([0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.8, 0.6, 0.4, 0.3])
    probs = np.stack([1 - p1, p1], 1)
    assert metrics.score("roc_auc", "binary", y, probs) == pytest.approx(skm.roc_auc_score(y, p1))


def test_lower_is_better_metrics_choose_the_smaller_score():
    assert metrics.is_better("rmse", 0.5, 0.6) and not metrics.is_better("rmse", 0.7, 0.6)
    assert metrics.is_better("accuracy", 0.7, 0.6)
    assert not metrics.is_better("accuracy", float("nan"), 0.1)


def test_qwk_on_regression_rounds_predictions():
    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert metrics.score("qwk", "regression", y, y + 0.3) == pytest.approx(1.0)


def test_multilabel_metrics_use_each_column():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.6], [0.3, 0.1]])
    assert metrics.score("accuracy", "multilabel", y, p) == 1.0
    assert metrics.score("roc_auc", "multilabel", y, p) == pytest.approx(1.0)
    assert metrics.score("log_loss", "multilabel", y, p) == pytest.approx(
        np.mean([skm.log_loss(y[:, j], p[:, j]) for j in range(2)]))
