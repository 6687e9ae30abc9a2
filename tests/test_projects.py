"""Inside each baked project: its own test suite (unit tests, bad inputs, an end-to-end run with a
metric floor), and through make: the demo pipeline folds -> train -> predict -> submit."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import COMBOS, ROOT, make, run


@pytest.mark.parametrize("task, problem", COMBOS)
def test_baked_project_passes_its_own_tests(baked, task, problem):
    out = make("test", baked[(task, problem)])
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
