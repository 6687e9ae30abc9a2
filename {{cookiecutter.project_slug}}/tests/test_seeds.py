"""train.seeds on a k-fold run: every fold trained once per seed on the same folds, OOF and test predictions
averaged over the seeds, cv.json with each seed's CV beside the averaged one, and a resume per seed and fold."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import TARGET_OVERRIDE
from helpers import PROJECT, like_demo, mod
from test_resume import KILLED, TASK, crash, inside, stage

metrics = mod("core.metrics")


@pytest.fixture(scope="module")
def seeded(demo_dir, tmp_path_factory):
    """A plain run (seed 42) and the same run with train.seeds=[42,7], 2 folds x 1 epoch."""
    root = tmp_path_factory.mktemp("seeds")
    shutil.copytree(PROJECT / "configs", root / "configs")
    args = [f"data.dir={demo_dir}", *TARGET_OVERRIDE, "train.progress=false", "train.epochs=1", "train.folds=[0,1]"]
    if TASK == "text":
        args.append(f"model.name={demo_dir / 'tiny_bert'}")
    with inside(root):
        like_demo("plain", "two", "killed")
    stage(root, "train", "plain", args)
    for name in ("train", "predict"):
        stage(root, name, "two", args + ["train.seeds=[42,7]"])
    return root, args + ["train.seeds=[42,7]"]


def read(path):
    return pd.read_csv(path, dtype={"id": str}, float_precision="round_trip")


def test_each_fold_is_trained_once_per_seed_and_the_oof_is_their_mean(seeded):
    root, _ = seeded
    run, plain = root / "outputs" / "two", root / "outputs" / "plain"
    # seed 42 is the plain run's seed: its models are the plain run's, to the byte; seed 7 trains other models
    for k in (0, 1):
        assert (run / f"fold{k}" / "seed42" / "oof.csv").read_bytes() == (plain / f"fold{k}" / "oof.csv").read_bytes()
        assert (run / f"fold{k}" / "seed7" / "oof.csv").read_bytes() != (plain / f"fold{k}" / "oof.csv").read_bytes()
        assert (run / f"fold{k}" / "seed7" / "best.pt").is_file() and not (run / f"fold{k}" / "best.pt").exists()
    cols = [c for c in read(run / "oof_preds.csv").columns if c != "id"]
    oof = read(run / "oof_preds.csv").set_index("id")
    for k in (0, 1):
        seeds = [read(run / f"fold{k}" / f"seed{s}" / "oof.csv").set_index("id")[cols].to_numpy() for s in (42, 7)]
        fold = read(run / f"fold{k}" / "oof.csv").set_index("id")
        np.testing.assert_allclose(fold[cols].to_numpy(), np.mean(seeds, axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(oof.loc[fold.index, cols].to_numpy(), fold[cols].to_numpy(), rtol=0, atol=1e-12)

    cv, plain_cv = (json.loads((r / "cv.json").read_text()) for r in (run, plain))
    assert cv["seeds"] == [42, 7] and set(cv["seed_cv"]) == {"42", "7"}
    assert cv["seed_cv"]["42"] == plain_cv["cv"] and cv["seed_folds"]["42"] == plain_cv["folds"]
    assert len(cv["best_epochs"]) == 4 and len(cv["folds"]) == 2
    history = pd.read_csv(run / "history.csv")
    assert history[["fold", "seed"]].values.tolist() == [[0, 42], [0, 7], [1, 42], [1, 7]]
    assert (run / "loss_fold1_seed7.png").is_file()


def test_the_seeded_cv_scores_the_averaged_oof(seeded, demo_dir):
    root, _ = seeded
    run = root / "outputs" / "two"
    cv = json.loads((run / "cv.json").read_text())
    problem = mod("core.config").load(config_dir=PROJECT / "configs").problem
    labels = mod("core.labels").LabelMap.load(run / "labels.json")
    train = pd.read_csv(demo_dir / "train.csv", dtype={"id": str})
    folds = read(run / "folds.csv").set_index("id").loc[train["id"], "fold"].to_numpy()
    covered = np.isin(folds, [0, 1])
    y = labels.encode(train, "id", "train.csv")
    preds = read(run / "oof_preds.csv").drop(columns="id").to_numpy()
    assert cv["cv"] == pytest.approx(metrics.score(cv["metric"], problem, y[covered], preds[covered]), abs=1e-12)


def test_predict_averages_every_seed_of_every_fold(seeded):
    root, _ = seeded
    run = root / "outputs" / "two"
    record = json.loads((run / "predict.json").read_text())
    assert record["models"] == ["fold 0 seed 42", "fold 0 seed 7", "fold 1 seed 42", "fold 1 seed 7"]
    per_fold = [read(run / f"fold{k}" / "test_preds.csv") for k in (0, 1)]
    mean = read(run / "test_preds.csv")
    assert per_fold[0]["id"].tolist() == mean["id"].tolist()
    cols = [c for c in mean.columns if c != "id"]
    np.testing.assert_allclose(mean[cols].to_numpy(), np.mean([f[cols].to_numpy() for f in per_fold], axis=0),
                               rtol=0, atol=1e-6)  # test_preds.csv rounds to 8 digits
    assert not np.allclose(per_fold[0][cols].to_numpy(), per_fold[1][cols].to_numpy())


def test_repeated_seeds_are_refused_before_any_work(workdir):
    with pytest.raises(mod("core.errors").ConfigError, match="'train.seeds' repeats"):
        mod("core.config").load("demo", ["train.seeds=[1,1]"])


@pytest.mark.slow
def test_a_seeded_run_killed_between_two_seeds_resumes_to_the_uninterrupted_result(seeded):
    root, args = seeded
    done = crash(root, "fold", "1", "killed", args)  # right after fold 0 seed 42 is marked done
    assert done.returncode == KILLED, done.stderr[-3000:]
    run = root / "outputs" / "killed"
    assert (run / "fold0" / "seed42" / "done.json").is_file() and not (run / "fold0" / "seed7").exists()
    stage(root, "train", "killed", args, "--resume")
    ref = root / "outputs" / "two"
    assert (run / "oof_preds.csv").read_bytes() == (ref / "oof_preds.csv").read_bytes()
    got, want = (json.loads((r / "cv.json").read_text()) for r in (run, ref))
    for key in ("cv", "folds", "seed_cv", "seed_folds", "best_epochs"):
        assert got[key] == want[key], key
