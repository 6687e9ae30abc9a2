"""End to end on the demo competition: folds -> train -> predict -> submit, artefacts and a metric floor."""
import json

import numpy as np
import pandas as pd
import yaml

from helpers import like_demo, mod, run_cli

config, metrics, targets = mod("core.config"), mod("core.metrics"), mod("core.labels")


def floor_ok(metric: str, problem: str, y: np.ndarray, preds: np.ndarray, constant: np.ndarray) -> tuple:
    """The model must close at least 30% of the gap between a constant prediction and a perfect one."""
    s = metrics.score(metric, problem, y, preds)
    base = metrics.score(metric, problem, y, np.broadcast_to(constant, preds.shape).copy())
    if metrics.METRICS[metric].greater_is_better:
        return s, base, s >= base + 0.3 * (1.0 - base)
    return s, base, s <= 0.7 * base


def test_folds_train_predict_submit_end_to_end(tiny, demo_dir, workdir, capsys):
    for stage in ("folds", "train", "predict", "submit"):
        assert run_cli(stage, "--exp", "demo", *tiny) == 0, capsys.readouterr().err
    run = workdir / "outputs" / "demo"
    cfg = config.load("demo", tiny)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved == config.to_dict(cfg)
    label_map = targets.LabelMap.load(run / "labels.json")
    id_col = cfg.data.id_col

    train = pd.read_csv(demo_dir / "train.csv", dtype={id_col: str})
    oof = pd.read_csv(run / "oof_preds.csv", dtype={id_col: str})
    assert oof.columns.tolist() == [id_col, *label_map.pred_cols]
    assert oof[id_col].tolist() == train[id_col].tolist()
    assert not oof.isna().any().any()
    if cfg.problem in ("binary", "multiclass"):
        assert np.allclose(oof[label_map.pred_cols].sum(1), 1.0, atol=1e-4)

    cv = json.loads((run / "cv.json").read_text())
    assert cv["metric"] == cfg.metric and len(cv["folds"]) == cfg.train.n_folds and cv["kind"] == "kfold"
    y = label_map.encode(train, id_col)
    assert np.isclose(cv["cv"], metrics.score(cfg.metric, cfg.problem, y, oof[label_map.pred_cols].to_numpy()))
    history = pd.read_csv(run / "history.csv")
    assert len(history) == cfg.train.n_folds * cfg.train.epochs
    for k in range(cfg.train.n_folds):
        assert (run / f"loss_fold{k}.png").read_bytes()[:4] == b"\x89PNG"
        assert (run / f"fold{k}" / "best.pt").exists()
    assert "CV" in (run / "train.log").read_text()

    test = pd.read_csv(demo_dir / "test.csv", dtype={id_col: str})
    test_preds = pd.read_csv(run / "test_preds.csv", dtype={id_col: str})
    assert test_preds.columns.tolist() == oof.columns.tolist()
    assert test_preds[id_col].tolist() == test[id_col].tolist()

    sample = pd.read_csv(demo_dir / "sample_submission.csv", dtype={id_col: str})
    sub = pd.read_csv(workdir / "submissions" / "demo.csv", dtype={id_col: str})
    assert sub.columns.tolist() == sample.columns.tolist()
    assert sub[id_col].tolist() == sample[id_col].tolist()

    solution = pd.read_csv(demo_dir / "solution.csv", dtype={id_col: str})
    y_test = label_map.encode(solution, id_col, "solution.csv")
    constant = oof[label_map.pred_cols].to_numpy().mean(0)
    s, base, ok = floor_ok(cfg.metric, cfg.problem, y_test, test_preds[label_map.pred_cols].to_numpy(), constant)
    assert ok, f"test {cfg.metric} {s:.4f} vs constant-prediction {base:.4f}"
    if cfg.problem in ("binary", "multiclass") and sub.columns[1] == label_map.target_cols[0]:
        allowed = set(label_map.classes) if cfg.submit.format != "proba" and cfg.metric not in ("roc_auc", "log_loss") \
            else None
        if allowed:
            assert set(sub[label_map.target_cols[0]].astype(str)) <= allowed


def test_a_finished_experiment_is_not_overwritten_silently(tiny, workdir, capsys):
    like_demo("once")
    args = ["--exp", "once", *tiny, "train.folds=[0]", "train.epochs=1"]
    assert run_cli("train", *args) == 0
    cv_file = workdir / "outputs" / "once" / "cv.json"
    before = cv_file.read_bytes()
    assert run_cli("train", *args) == 2
    assert "overwrite=true" in capsys.readouterr().err
    assert cv_file.read_bytes() == before
    assert run_cli("train", *args, "overwrite=true") == 0
