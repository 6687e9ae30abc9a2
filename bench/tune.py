"""make tune measured: a 12-trial Optuna study on image_fmnist (resnet18 at 32 px from scratch, 2 of 5 folds),
killed with SIGKILL in the middle of a trial and continued; the best trial against the base on CV and test.

    OMP_NUM_THREADS=1 python bench/tune.py [--data /work/shared/data/image_fmnist] [--trials 12] [--epochs 1]

Bakes a project into bench/runs/tpl_tune/ (configs/base.yaml: the data folder in place, never copied),
runs `make tune EXP=base NAME=fm` until the study's log shows trial --kill-at fold 0 training, kills the
whole process group (kill -9), runs `make tune` again, then predicts the best trial and the base-values
trial (trial 0) and scores both against solution.csv. Writes bench/results_tune.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from cookiecutter.main import cookiecutter

BENCH = Path(__file__).resolve().parent
REPO, RUNS = BENCH.parent, BENCH / "runs"
SPACE = {"train.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
         "train.weight_decay": {"low": 1.0e-5, "high": 1.0e-1, "log": True},
         "loss.label_smoothing": {"low": 0.0, "high": 0.3},
         "model.drop_rate": {"low": 0.0, "high": 0.5}}


def bake(data: Path, epochs: int, trials: int) -> Path:
    proj = RUNS / "tpl_tune"
    shutil.rmtree(proj, ignore_errors=True)
    cookiecutter(str(REPO), no_input=True, output_dir=str(RUNS), extra_context=dict(
        project_slug=proj.name, task="image", problem="multiclass", metric="accuracy", n_folds="5",
        target_cols="label", image_col="image", image_size="32"))
    base = dict(data=dict(dir=str(data)), model=dict(name="resnet18", pretrained=False),
                train=dict(epochs=epochs, batch_size=64, num_workers=0, progress=False))
    (proj / "configs" / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    tune = dict(space=SPACE, folds=[0, 1], trials=trials)
    (proj / "configs" / "fm.tune.yaml").write_text(yaml.safe_dump({"tune": tune}, sort_keys=False))
    return proj


def make(proj: Path, *args: str, check: bool = True, **kw) -> subprocess.Popen | float:
    cmd = ["make", *args, f"PYTHON={sys.executable}"]
    print("$ " + " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if not check:
        return subprocess.Popen(cmd, cwd=proj, env=env, start_new_session=True, **kw)
    t0 = time.time()
    out = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.time() - t0


def kill_mid_trial(proj: Path, kill_at: int) -> tuple[float, str]:
    """make tune until trial kill_at has logged its first epoch, then SIGKILL to the process group."""
    log = open(proj / "tune_first.log", "w")
    t0, p = time.time(), make(proj, "tune", "EXP=base", "NAME=fm", check=False, stdout=log, stderr=subprocess.STDOUT)
    trial_log = proj / "outputs" / f"fm_t{kill_at}" / "train.log"
    while p.poll() is None:
        if trial_log.is_file() and "fold 0 epoch 1/" in trial_log.read_text():
            time.sleep(3)  # into epoch 2 (or fold 1): a fold's last.pt exists
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return time.time() - t0, trial_log.read_text().strip().splitlines()[-1]
        time.sleep(0.5)
    sys.exit(f"make tune ended (code {p.returncode}) before trial {kill_at} started; see {proj}/tune_first.log")


def test_accuracy(proj: Path, exp: str, solution: Path) -> float:
    make(proj, "predict", f"EXP={exp}")
    preds = pd.read_csv(proj / "outputs" / exp / "test_preds.csv", dtype={"id": str}).set_index("id")
    sol = pd.read_csv(solution, dtype={"id": str}).set_index("id")
    labels = preds.idxmax(axis=1).str.replace("label_", "", regex=False)
    return float((labels.loc[sol.index].astype(int) == sol["label"]).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "image_fmnist"))
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--kill-at", type=int, default=4)
    args = ap.parse_args()
    data = Path(args.data)
    proj = bake(data, args.epochs, args.trials)
    first, last_line = kill_mid_trial(proj, args.kill_at)
    import sqlite3
    with sqlite3.connect(proj / "outputs" / "fm" / "study.db") as con:
        states = con.execute("select number, state from trials order by number").fetchall()
    second = make(proj, "tune", "EXP=base", "NAME=fm")
    summary = (proj / "outputs" / "fm" / "summary.md").read_text()
    best = re.search(r"Best: trial (\d+), CV ([0-9.]+) \(`outputs/([^`]+)`", summary)
    base_cv = json.loads((proj / "outputs" / "fm_t0" / "cv.json").read_text())["cv"]
    best_run = best.group(3)
    test_best = test_accuracy(proj, best_run, data / "solution.csv")
    test_base = test_accuracy(proj, "fm_t0", data / "solution.csv")
    retried = re.findall(r"trial (\d+) was interrupted[^\n]*", (proj / "outputs" / "fm" / "tune.log").read_text())
    lines = ["# make tune on image_fmnist", "",
             f"resnet18 at 32 px from scratch, {args.epochs} epochs, batch 64, folds [0, 1] of 5 (3200 training rows "
             f"each), OMP_NUM_THREADS=1 on a shared 2-core CPU; space {json.dumps(SPACE)}; TPE, median pruner "
             f"(5 startup trials); trial 0 = the base's values (lr auto, weight decay 0.01, smoothing auto, drop 0.1).",
             "", "| | CV accuracy (folds 0, 1) | test accuracy (1000 rows, solution.csv) |", "|---|---|---|",
             f"| base values (trial 0, fm_t0) | {base_cv:.4f} | {test_base:.4f} |",
             f"| best trial ({best.group(1)}, {best_run}) | {float(best.group(2)):.4f} | {test_best:.4f} |", "",
             f"Wall time: first `make tune` {first:.0f} s until the kill, second `make tune` {second:.0f} s "
             f"(total {first + second:.0f} s).", "",
             f"Killed with SIGKILL (process group) during trial {args.kill_at}; its train.log ended with "
             f"`{last_line[9:]}`. States in study.db right after the kill: {states}. The second run: "
             f"interrupted trial(s) {retried} marked failed and re-run in the same folder.", "",
             "## summary.md", "", summary]
    (BENCH / "results_tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12]))


if __name__ == "__main__":
    main()
