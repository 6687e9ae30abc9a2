"""make tune: an Optuna study of k-fold trials that continues after a crash and refuses a bad space up front."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import like_demo, mod, run_cli

SPACE = {"train.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "model.drop_rate": {"low": 0.0, "high": 0.5}}
TRIAL = ["train.epochs=1", "tune.folds=[0,1]"]


def study_files(space=SPACE):
    like_demo("base")
    Path("configs/s.tune.yaml").write_text(yaml.safe_dump({"tune": {"space": space}}))


def trials():
    import optuna
    return optuna.load_study(study_name="s", storage=f"sqlite:///{Path('outputs/s/study.db').resolve()}").trials


def test_a_study_writes_best_and_summary_and_a_second_run_continues_it(tiny):
    study_files()
    assert run_cli("tune", "--exp", "base", "--name", "s", *tiny, *TRIAL, "tune.trials=2") == 0
    first = trials()
    assert [t.state.name for t in first] == ["COMPLETE", "COMPLETE"]
    assert first[0].user_attrs["base"] and first[0].params["train.lr"] == pytest.approx(3e-3)  # the base's values
    with sqlite3.connect("outputs/s/study.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # every trial is an experiment: its CV is the value the study recorded
    for t in first:
        assert json.loads(Path(f"outputs/s_t{t.number}/cv.json").read_text())["cv"] == pytest.approx(t.value)
    metric = mod("core.config").load("base", tiny).metric  # rmse in a regression project: lower is better
    best = (max if mod("core.metrics").METRICS[metric].greater_is_better else min)(first, key=lambda t: t.value)
    Path("configs/best.yaml").write_text(Path("outputs/s/best.yaml").read_text())
    cfg = mod("core.config").load("best", tiny)
    assert cfg.train.lr == pytest.approx(best.params["train.lr"]) and cfg.train.epochs == 1 and cfg.train.folds == []
    assert f"Best: trial {best.number}" in Path("outputs/s/summary.md").read_text()
    assert Path("outputs/s/history.png").stat().st_size > 0

    stamp = Path("outputs/s_t0/cv.json").stat().st_mtime_ns
    assert run_cli("tune", "--exp", "base", "--name", "s", *tiny, *TRIAL, "tune.trials=3") == 0
    again = trials()
    assert len(again) == 3 and again[2].state.name == "COMPLETE"
    assert [(t.params, t.datetime_start) for t in again[:2]] == [(t.params, t.datetime_start) for t in first]
    assert Path("outputs/s_t0/cv.json").stat().st_mtime_ns == stamp  # finished trials are not run again
    assert again[2].params != first[0].params and again[2].params != first[1].params


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_trial_left_running_by_a_killed_process_is_failed_and_its_values_run_again(tiny):
    study_files()
    import optuna
    st = mod("tune.study")
    Path("outputs/s").mkdir(parents=True)
    study = optuna.create_study(storage=st.open_storage(Path("outputs/s/study.db")), study_name="s",
                                direction="maximize")
    left = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                      "model.drop_rate": optuna.distributions.FloatDistribution(0.0, 0.5)})
    left.set_user_attr("run", "s_t0")
    left.set_user_attr("owner", {"pid": dead_pid(), "host": __import__("socket").gethostname()})
    Path("outputs/s_t0/fold0").mkdir(parents=True)
    Path("outputs/s_t0/fold0/half_written.tmp").write_text("x")  # what the killed trial left
    assert run_cli("tune", "--exp", "base", "--name", "s", *tiny, *TRIAL, "tune.trials=1") == 0
    t0, t1 = trials()
    assert t0.state.name == "FAIL" and t1.state.name == "COMPLETE"
    assert t1.params == t0.params and t1.user_attrs["retry_of"] == 0 and t1.user_attrs["run"] == "s_t0"
    assert not Path("outputs/s_t0/fold0/half_written.tmp").exists()  # nothing resumable: the folder was replaced
    assert json.loads(Path("outputs/s_t0/cv.json").read_text())["cv"] == pytest.approx(t1.value)


@pytest.mark.parametrize("space, named", [
    ({"train.lrr": {"low": 0.1, "high": 0.2}}, "'train.lrr'"),                        # unknown key
    ({"train.epochs": {"low": 1.5, "high": 3}}, "'train.epochs'"),                     # an int key, a float bound
    ({"loss.label_smoothing": {"low": 0.0, "high": 1.5}}, "'loss.label_smoothing'"),   # outside the key's range
    ({"optim.name": {"low": 1, "high": 2}}, "'optim.name'"),                           # a range on a string key
    ({"optim.name": {"choices": ["adamw", "adam"]}}, "'optim.name'"),                  # a choice the schema refuses
    ({"train.folds": {"choices": [[0], [1]]}}, "'train.folds'"),                       # changes the folds
    ({"train": {"low": 0.1, "high": 0.2}}, "'train'"),                                 # a section
    ({}, "'tune.space' is empty"),
])
def test_a_bad_space_is_refused_before_any_trial(tiny, capsys, space, named):
    study_files(space)
    assert run_cli("tune", "--exp", "base", "--name", "s", *tiny, *TRIAL) == 2
    assert named in capsys.readouterr().err
    assert not Path("outputs").exists()


def test_a_study_folder_built_from_another_base_is_refused(tiny, capsys):
    study_files()
    like_demo("other")
    mod("tune.study").open_storage(Path("outputs/s/study.db"))
    Path("outputs/s/study.json").write_text(json.dumps({"base": "other", "metric": "accuracy", "folds": [0, 1]}))
    assert run_cli("tune", "--exp", "base", "--name", "s", *tiny, *TRIAL) == 2
    assert "built with base other" in capsys.readouterr().err
    assert not list(Path("outputs").glob("s_t*"))


@pytest.mark.slow  # problem-agnostic: runs in the one image and one text project that run the slow tests
def test_with_eval_every_a_hopeless_trial_is_pruned_inside_its_first_fold(tiny):
    # trial 0: the base's lr; trial 1: an lr that cannot learn, worse than trial 0 at some evaluation of fold 0
    study_files({"train.lr": {"low": 1.0e-9, "high": 2.0e-9, "log": True}})
    args = ["train.epochs=1", "tune.folds=[0,1]", "train.eval_every=3", "tune.startup_trials=1", "tune.trials=2"]
    assert run_cli("tune", "--exp", "base", "--name", "s", *tiny, *args) == 0
    base, starved = trials()
    assert base.state.name == "COMPLETE" and starved.state.name == "PRUNED"
    step = mod("tune.setup").EVAL_STEP
    assert {s // step for s in base.intermediate_values} == {0, 1, 2}  # fold scores, fold 0's and fold 1's evaluations
    assert starved.intermediate_values and all(step < s < 2 * step for s in starved.intermediate_values)
    import pandas as pd
    assert set(pd.read_csv("outputs/s_t1/history.csv")["fold"]) == {0} and not Path("outputs/s_t1/cv.json").exists()
    assert "pruned after 0 fold(s), " in Path("outputs/s/summary.md").read_text()
