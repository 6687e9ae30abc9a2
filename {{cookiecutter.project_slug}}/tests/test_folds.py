"""Folds: fixed, stratified, grouped when asked, shared by experiments, independent of row order."""
import numpy as np
import pandas as pd
import pytest

from helpers import mod

config, folds_mod, targets = mod("core.config"), mod("data.splits"), mod("core.labels")
DataError = mod("core.errors").DataError


def _setup(problem, df, *extra, cols=("y",)):
    cfg = config.load("demo", [f"problem={problem}", f"data.target_cols=[{','.join(cols)}]", "train.n_folds=4",
                               "metric=" + metrics_for(problem), *extra])
    label_map = targets.LabelMap.fit(problem, list(cols), df, "id")
    return cfg, label_map


def metrics_for(problem):
    return {"binary": "accuracy", "multiclass": "accuracy", "multilabel": "roc_auc", "regression": "rmse"}[problem]


def classification_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    return pd.DataFrame({"id": [f"r{i:04d}" for i in range(n)], "y": y, "g": rng.integers(0, 30, n).astype(str)})


def test_classification_folds_are_stratified_and_cover_every_row_once(workdir):
    df = classification_frame()
    cfg, label_map = _setup("multiclass", df)
    f = folds_mod.make_folds(cfg, df, label_map)
    assert f["id"].tolist() == df["id"].tolist()
    assert sorted(f["fold"].unique()) == [0, 1, 2, 3]
    share = pd.crosstab(f["fold"], df["y"], normalize="columns")
    assert np.allclose(share.to_numpy(), 0.25, atol=0.06)


def test_same_ids_get_same_folds_whatever_the_row_order(workdir):
    df = classification_frame()
    cfg, label_map = _setup("multiclass", df)
    a = folds_mod.make_folds(cfg, df, label_map).set_index("id")["fold"]
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = folds_mod.make_folds(cfg, shuffled, label_map).set_index("id")["fold"]
    assert a.sort_index().equals(b.sort_index())


def test_folds_file_is_written_once_and_shared(workdir):
    df = classification_frame()
    cfg, label_map = _setup("multiclass", df)
    first = folds_mod.load_or_make_folds(cfg, df, label_map)
    path = folds_mod.folds_file(cfg)
    mtime = path.stat().st_mtime_ns
    cfg2, _ = _setup("multiclass", df, "seed=7", "train.lr=0.1")  # another experiment, same data
    second = folds_mod.load_or_make_folds(cfg2, df, label_map)
    assert path.stat().st_mtime_ns == mtime and first.equals(second)


def test_folds_file_for_other_rows_is_refused(workdir):
    df = classification_frame()
    cfg, label_map = _setup("multiclass", df)
    folds_mod.load_or_make_folds(cfg, df, label_map)
    with pytest.raises(DataError, match="different"):
        folds_mod.load_or_make_folds(cfg, df.iloc[:-5], label_map)


def test_groups_never_straddle_folds(workdir):
    df = classification_frame()
    cfg, label_map = _setup("multiclass", df, "data.group_col=g")
    f = folds_mod.make_folds(cfg, df, label_map)
    assert (df.assign(fold=f["fold"]).groupby("g")["fold"].nunique() == 1).all()


def test_regression_folds_balance_the_target(workdir):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(400)], "y": rng.exponential(size=400)})
    cfg, label_map = _setup("regression", df)
    f = folds_mod.make_folds(cfg, df, label_map)
    means = df.assign(fold=f["fold"]).groupby("fold")["y"].mean()
    assert means.max() - means.min() < 0.25 * df["y"].mean()


def test_multilabel_folds_balance_every_label(workdir):
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < [0.5, 0.2, 0.05]).astype(int)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(400)], "a": y[:, 0], "b": y[:, 1], "c": y[:, 2]})
    cfg, label_map = _setup("multilabel", df, cols=("a", "b", "c"))
    f = folds_mod.make_folds(cfg, df, label_map)
    per_fold = df.assign(fold=f["fold"]).groupby("fold")[["a", "b", "c"]].sum()
    assert (per_fold.max() - per_fold.min() <= 2).all()


def test_more_folds_than_class_members_is_an_error_naming_the_class(workdir):
    df = pd.DataFrame({"id": [f"r{i}" for i in range(20)], "y": ["a"] * 17 + ["rare"] * 3})
    cfg, label_map = _setup("multiclass", df)
    with pytest.raises(DataError, match=r"'rare', 3.*train.n_folds=4"):
        folds_mod.make_folds(cfg, df, label_map)
