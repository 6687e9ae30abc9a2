"""make leaderboard: every finished experiment, best first in its metric's direction, with the config keys that
differ from the base; an unknown base is a clear error."""
import json
import os
import time

import pandas as pd

from helpers import mod, run_cli

config, metrics = mod("core.config"), mod("core.metrics")


def fake_run(workdir, exp, cfg, cv, metric=None, kind="kfold", **extra):
    """An outputs/<exp>/ as train leaves it: the resolved config.yaml and cv.json."""
    cfg.exp = exp
    if metric:
        cfg.metric = metric
    run = workdir / "outputs" / exp
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.dump(cfg))
    (run / "cv.json").write_text(json.dumps({"kind": kind, "metric": cfg.metric, "cv": cv, "folds_run": [0, 1, 2], "n_folds": 3,
                                             "wall_seconds": 12.5, **extra}))
    return run


def two_metrics(problem):
    """Two metrics of this problem that point in opposite directions."""
    return ("rmse", "r2") if problem == "regression" else ("roc_auc", "log_loss")


def table_rows(stdout):
    """exp -> its printed markdown row, in printed order (the header's '#' cell is not a number)."""
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return {cells[2].strip(): "|".join(cells) for cells in rows if cells[1].strip().isdigit()}


def test_leaderboard_sorts_each_metric_in_its_direction_and_shows_what_differs(tiny, workdir, capsys):
    cfg = config.load("demo", tiny)
    first, second = two_metrics(cfg.problem)
    fake_run(workdir, "base", config.load("demo", tiny), 0.50, first)
    fake_run(workdir, "lr_up", config.load("demo", [*tiny, "train.lr=0.01"]), 0.60, first)
    fake_run(workdir, "drop", config.load("demo", [*tiny, "model.drop_rate=0.3", "seed=7"]), 0.40, first)
    fake_run(workdir, "other_a", config.load("demo", tiny), 0.30, second)
    fake_run(workdir, "other_b", config.load("demo", tiny), 0.20, second)
    fake_run(workdir, "ens", config.load("demo", tiny), 0.55, first, kind="ensemble", method="weighted")
    fake_run(workdir, "pl", config.load("demo", [*tiny, "pseudo.base=base"]), 0.45, first, kind="pseudo")
    finished = time.mktime((2001, 6, 15, 12, 0, 0, 0, 0, -1))
    os.utime(workdir / "outputs" / "base" / "cv.json", (finished, finished))
    (workdir / "outputs" / "sanity_demo").mkdir()  # make sanity's folder is no experiment
    (workdir / "outputs" / "sanity_demo" / "sanity.json").write_text("{}")
    (workdir / "outputs" / "half").mkdir()  # a run that never finished: listed, not ranked
    (workdir / "outputs" / "half" / "config.yaml").write_text(config.dump(cfg))

    assert run_cli("leaderboard", "--base", "base") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    up = metrics.METRICS[first].greater_is_better
    by_first = sorted(["base", "lr_up", "drop", "ens", "pl"],
                      key=lambda e: {"base": .5, "lr_up": .6, "drop": .4, "ens": .55, "pl": .45}[e], reverse=up)
    by_second = ["other_a", "other_b"] if metrics.METRICS[second].greater_is_better else ["other_b", "other_a"]
    lines = table_rows(out)
    assert list(lines) == by_first + by_second
    assert "sanity_demo" not in out and "- half: no cv.json" in out
    assert "(base)" in lines["base"] and "2001-06-15 12:00" in lines["base"]
    assert "train.lr=0.01" in lines["lr_up"] and "model.drop_rate" not in lines["lr_up"]
    assert "model.drop_rate=0.3" in lines["drop"] and "seed=7" in lines["drop"]
    assert "| ensemble |" in lines["ens"] and "pseudo from base" in lines["pl"] and "pseudo.base=base" in lines["pl"]
    assert "| metric |" in out and "differs from base" in out

    csv = pd.read_csv(workdir / "outputs" / "leaderboard.csv")
    assert csv["exp"].tolist() == by_first + by_second
    assert csv.loc[csv["exp"] == "lr_up", "differs"].item() == "train.lr=0.01"
    assert csv.loc[csv["exp"] == "base", "wall_seconds"].item() == 12.5


def test_without_a_base_the_differences_are_against_the_default_config(tiny, workdir, capsys):
    fake_run(workdir, "exp1", config.load("demo", tiny), 0.5)
    assert run_cli("leaderboard") == 0
    out = capsys.readouterr().out
    assert "differs from configs/default.yaml" in out
    assert "data.dir=" in out and "model.name=" in out  # configs/demo.yaml's changes


def test_an_unknown_base_exits_2_and_lists_the_experiments(tiny, workdir, capsys):
    fake_run(workdir, "alpha", config.load("demo", tiny), 0.5)
    fake_run(workdir, "beta", config.load("demo", tiny), 0.6)
    assert run_cli("leaderboard", "--base", "gamma") == 2
    err = capsys.readouterr().err
    assert "'gamma'" in err and "alpha, beta" in err


def test_an_empty_outputs_folder_prints_a_note(workdir, capsys):
    assert run_cli("leaderboard") == 0
    assert "no experiments" in capsys.readouterr().out
    assert not (workdir / "outputs" / "leaderboard.csv").exists()
