"""Inside each baked project: its own test suite (unit tests, bad inputs, an end-to-end run with a
metric floor), and through make: the demo pipeline folds -> train -> predict -> submit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import COMBOS, ROOT, make, run


# The slow tests (the per-trick training sweep, bundles, injected faults) run in one image and one text
# project; they are problem-agnostic there, and their problem-specific parts have tests that run everywhere.
FULL = {("image", "multiclass"), ("text", "binary")}


@pytest.mark.parametrize("task, problem", COMBOS)
def test_baked_project_passes_its_own_tests(baked, task, problem, tmp_path):
    project = Path(shutil.copytree(baked[(task, problem)], tmp_path / "p"))  # keep the shared bake pristine
    args = [] if (task, problem) in FULL else ["PYTEST_ARGS=-m 'not slow'"]
    out = make("test", project, *args)
    tail = (out.stdout + out.stderr)[-4000:]
    assert out.returncode == 0, tail
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= 30 and " failed" not in out.stdout, tail


def test_root_demo_runs_both_tasks_through_make(tmp_path):
    out = run([sys.executable, str(ROOT / "bench" / "demo.py"), "--out", str(tmp_path)], cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    for task, metric in (("image", "accuracy"), ("text", "roc_auc")):
        project = tmp_path / f"demo_{task}"
        cv = json.loads((project / "outputs" / "demo" / "cv.json").read_text())
        assert cv["metric"] == metric and cv["cv"] > 0.8, cv
        sub = pd.read_csv(project / "submissions" / "demo.csv")
        sample = pd.read_csv(project / "data" / "demo" / "sample_submission.csv")
        assert sub.columns.tolist() == sample.columns.tolist() and sub["id"].tolist() == sample["id"].tolist()
        assert str(project / "submissions" / "demo.csv") in out.stdout


@pytest.mark.parametrize("task, problem", [("image", "multiclass"), ("text", "binary")])
def test_two_processes_give_one_oof_row_per_train_row_and_the_same_cv(baked, task, problem, tmp_path):
    """make train NPROC=2: DDP over two CPU processes (gloo) against one process with the same train.batch_size,
    which is the global batch: the same optimiser steps (the lr of every epoch is equal), about the same CV."""
    project = Path(shutil.copytree(baked[(task, problem)], tmp_path / "p"))
    assert make("demo-data", project).returncode == 0
    for exp in ("one", "two"):  # the demo experiment's settings under two names
        (project / "configs" / f"{exp}.yaml").write_text((project / "configs" / "demo.yaml").read_text())
    common = "train.folds=[0] train.epochs=6 overwrite=true"
    one = make("train", project, "EXP=one", f"ARGS={common} train.batch_size=32")
    two = make("train", project, "EXP=two", "NPROC=2", f"ARGS={common} train.batch_size=32")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x 2" in two.stderr  # the log line names the process count
    train = pd.read_csv(project / "data" / "demo" / "train.csv")
    cvs = {}
    for exp in ("one", "two"):
        oof = pd.read_csv(project / "outputs" / exp / "fold0" / "oof.csv")
        folds = pd.read_csv(project / "outputs" / exp / "folds.csv")
        assert len(oof) == (folds["fold"] == 0).sum() and oof["id"].is_unique
        assert set(oof["id"]) == set(folds.loc[folds["fold"] == 0, "id"])
        assert len(pd.read_csv(project / "outputs" / exp / "oof_preds.csv")) == len(train)
        cvs[exp] = json.loads((project / "outputs" / exp / "cv.json").read_text())
    assert abs(cvs["one"]["cv"] - cvs["two"]["cv"]) < 0.05, cvs
    assert [(c["processes"], c["batch_size_per_process"]) for c in (cvs["one"], cvs["two"])] == [(1, 32), (2, 16)]
    lrs = [pd.read_csv(project / "outputs" / e / "history.csv")["lr"].tolist() for e in ("one", "two")]
    assert lrs[0] == lrs[1], lrs  # the same number of optimiser steps in every epoch
    odd = make("train", project, "EXP=one", "NPROC=2", f"ARGS={common} train.batch_size=31")
    assert odd.returncode != 0 and "config key 'train.batch_size' is 31, the global batch" in odd.stderr

    # kill both ranks mid-epoch (tests/crash_run.py, the way kill -9 does), then RESUME=1 with NPROC=2:
    # the main process wrote the resume point, both load it, and the run ends where "two" ended
    (project / "configs" / "three.yaml").write_text((project / "configs" / "demo.yaml").read_text())
    args = ["--exp", "three", *common.split(), "train.batch_size=32"]
    crashed = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "tests/crash_run.py", "step", "4:2", *args], cwd=project)
    assert crashed.returncode != 0 and (project / "outputs" / "three" / "fold0" / "last.pt").exists()
    resumed = make("train", project, "EXP=three", "NPROC=2", "RESUME=1", f"ARGS={common} train.batch_size=32")
    assert resumed.returncode == 0 and "resumed after epoch 3" in resumed.stderr, resumed.stderr[-3000:]
    for name in ("oof_preds.csv", "history.csv"):
        a, b = (pd.read_csv(project / "outputs" / e / name).drop(columns="seconds", errors="ignore")
                for e in ("two", "three"))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
