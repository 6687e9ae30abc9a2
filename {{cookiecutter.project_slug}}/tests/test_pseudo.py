"""Pseudo-labelling round and full fit: no leak across folds, artefacts on the original rows, chaining."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from helpers import like_demo, mod, run_cli

config, targets, kfold, fit = mod("core.config"), mod("core.labels"), mod("training.kfold"), mod("training.fit")


def _base(tiny, name="base", *extra):
    like_demo(name)
    for stage in ("train", "predict"):
        assert run_cli(stage, "--exp", name, *tiny, "train.epochs=1", *extra) == 0


def _capture_extra(monkeypatch) -> dict:
    """Record the pseudo rows that fit_fold receives for each fold (what training really sees)."""
    seen, real = {}, kfold.fit_fold

    def spy(cfg, k, *args, extra=None, **kw):
        seen[k] = extra
        return real(cfg, k, *args, extra=extra, **kw)
    monkeypatch.setattr(kfold, "fit_fold", spy)
    return seen


def test_fold_k_learns_only_from_base_fold_k_predictions(tiny, workdir, monkeypatch, capsys):
    _base(tiny)
    seen = _capture_extra(monkeypatch)
    assert run_cli("pseudo", "--exp", "base", "pseudo.soft=true", "pseudo.weight=0.5") == 0, capsys.readouterr().err
    cfg = config.load("base", tiny)
    label_map = targets.LabelMap.load("outputs/base/labels.json")
    id_col = cfg.data.id_col
    test = pd.read_csv(f"{cfg.data.dir}/test.csv", dtype={id_col: str})
    mean = pd.read_csv("outputs/base/test_preds.csv", dtype={id_col: str})[label_map.pred_cols].to_numpy()
    assert sorted(seen) == list(range(cfg.train.n_folds))
    for k, extra in seen.items():
        own = pd.read_csv(f"outputs/base/fold{k}/test_preds.csv", dtype={id_col: str})
        expected = own[label_map.pred_cols].to_numpy()
        if label_map.problem == "regression":
            expected = (expected - np.array(label_map.mean)) / np.array(label_map.std)
        assert extra.df[id_col].tolist() == test[id_col].tolist()
        assert np.allclose(extra.y, expected, atol=1e-6), f"fold {k} was fed other predictions than its own"
        assert not np.allclose(expected, mean if label_map.problem != "regression" else
                               (mean - np.array(label_map.mean)) / np.array(label_map.std), atol=1e-6)
        assert extra.weight == 0.5
        written = pd.read_csv(f"outputs/base_pseudo/fold{k}/pseudo_labels.csv", dtype={id_col: str})
        assert written[id_col].tolist() == test[id_col].tolist() and (written["weight"] == 0.5).all()

    # the new run is on the original rows and folds, so its CV compares with the base's
    base_cv = json.loads(open("outputs/base/cv.json").read())
    new_cv = json.loads(open("outputs/base_pseudo/cv.json").read())
    assert new_cv["folds_run"] == base_cv["folds_run"] and new_cv["metric"] == base_cv["metric"]
    assert (base_cv["kind"], new_cv["kind"]) == ("kfold", "pseudo")
    train = pd.read_csv(f"{cfg.data.dir}/train.csv", dtype={id_col: str})
    oof = pd.read_csv("outputs/base_pseudo/oof_preds.csv", dtype={id_col: str})
    assert oof[id_col].tolist() == train[id_col].tolist() and not oof.isna().any().any()
    assert pd.read_csv("outputs/base_pseudo/folds.csv").equals(pd.read_csv("outputs/base/folds.csv"))
    preds = pd.read_csv("outputs/base_pseudo/test_preds.csv", dtype={id_col: str})
    assert preds[id_col].tolist() == test[id_col].tolist()
    assert run_cli("submit", "--exp", "base_pseudo") == 0
    saved = yaml.safe_load((workdir / "outputs/base_pseudo/config.yaml").read_text())
    assert saved["pseudo"]["base"] == "base" and saved["pseudo"]["soft"] and saved["exp"] == "base_pseudo"


@pytest.mark.slow
def test_hard_labels_keep_confident_rows_and_rounds_chain(tiny, workdir, monkeypatch, capsys):
    _base(tiny, "b2", "train.folds=[0]")
    seen = _capture_extra(monkeypatch)
    label_map = targets.LabelMap.load("outputs/b2/labels.json")
    own = pd.read_csv("outputs/b2/fold0/test_preds.csv")[label_map.pred_cols].to_numpy()
    thr = float(np.quantile(own.max(1), 0.5)) if label_map.problem in ("binary", "multiclass") else 0.5
    assert run_cli("pseudo", "--exp", "b2", "--name", "r1", f"pseudo.threshold={thr}") == 0, capsys.readouterr().err
    keep, y = mod("pseudo").pseudo_targets(config.load("x", [f"pseudo.threshold={thr}"],
                                                       base=workdir / "outputs/b2/config.yaml"), label_map, own)
    assert np.array_equal(seen[0].y, y) and len(seen[0].df) == keep.sum()
    if label_map.problem in ("binary", "multiclass"):
        assert 0 < keep.sum() < len(own) and np.array_equal(y, own[keep].argmax(1))
    # a second round starts from the first round's own fold predictions
    assert run_cli("pseudo", "--exp", "r1", f"pseudo.threshold={thr}") == 0, capsys.readouterr().err
    assert json.loads(open("outputs/r1_pseudo/cv.json").read())["folds_run"] == [0]


def test_pseudo_refuses_before_training(tiny, workdir, capsys):
    _base(tiny, "b3", "train.folds=[0]")
    if targets.LabelMap.load("outputs/b3/labels.json").problem != "regression":  # it ignores the threshold
        assert run_cli("pseudo", "--exp", "b3", "pseudo.threshold=1.0") == 2
        assert "pseudo.threshold" in capsys.readouterr().err and not (workdir / "outputs/b3_pseudo").exists()
    assert run_cli("pseudo", "--exp", "b3", "--name", "b3") == 2
    assert run_cli("pseudo", "--exp", "nope") == 2
    assert "make train EXP=nope" in capsys.readouterr().err


def test_pseudo_labels_outside_the_base_label_map_are_refused(tiny, workdir, data_copy, capsys):
    _base(tiny, "b4", "train.folds=[0]")
    label_map = targets.LabelMap.load("outputs/b4/labels.json")
    if label_map.problem in ("binary", "multiclass"):  # a labelled pseudo.source must hold the base's labels only
        src = pd.read_csv(data_copy / "test.csv", dtype=str)
        src["id"] = "src_" + src["id"]
        src[label_map.target_cols[0]] = [label_map.classes[0], "never_seen"] + [""] * (len(src) - 2)
        src.to_csv(data_copy / "source.csv", index=False)
        assert run_cli("pseudo", "--exp", "b4", f"data.dir={data_copy}", "pseudo.source=source.csv") == 2
        err = capsys.readouterr().err
        assert "source.csv" in err and "['never_seen'] outside the training label map" in err and "line 3" in err
    preds = workdir / "outputs" / "b4" / "fold0" / "test_preds.csv"
    preds.write_text(preds.read_text().replace(",", ",x", 1))  # predictions made under another label map
    assert run_cli("pseudo", "--exp", "b4") == 2
    assert "test_preds.csv holds columns" in capsys.readouterr().err
    assert not (workdir / "outputs" / "b4_pseudo").exists()


def test_training_rows_add_pseudo_rows_to_the_training_part_only():
    df = pd.DataFrame({"id": list("abcdef")})
    y = np.array([0, 1, 0, 1, 0, 1])
    extra = fit.PseudoRows(pd.DataFrame({"id": ["t1", "t2"]}), np.array([[0.2, 0.8], [0.6, 0.4]], np.float32), 0.3)
    tr = np.array([0, 1, 2, 3])
    rows, fit_y, w = fit.training_rows(df, y, tr, extra, smoothing=0.1)
    assert rows["id"].tolist() == ["a", "b", "c", "d", "t1", "t2"]  # e, f (validation) never appear
    assert np.allclose(fit_y[:4], [[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.05, 0.95]])
    assert np.allclose(fit_y[4:], extra.y) and np.allclose(w, [1, 1, 1, 1, 0.3, 0.3])


def test_sample_weight_scales_each_row_loss():
    cfg = config.load("demo", ["loss.label_smoothing=0"])
    label_map = targets.LabelMap("multiclass", ["t"], classes=["a", "b", "c"])
    loss = mod("training.tricks.losses").build_loss(cfg, label_map, np.array([0, 1, 2]))
    logits, target = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    w = torch.tensor([1.0, 0.5, 0.0, 2.0])
    assert torch.allclose(loss(logits, target, w), (per_row * w).mean())
    assert torch.allclose(loss(logits, target), per_row.mean())


@pytest.mark.slow
def test_full_fit_trains_every_row_for_the_cv_epochs_over_seeds(tiny, workdir, capsys):
    like_demo("ff")
    assert run_cli("train", "--exp", "ff", *tiny, "train.epochs=2") == 0
    best = json.loads(open("outputs/ff/cv.json").read())["best_epochs"]
    assert run_cli("train", "--exp", "ff", *tiny, "train.epochs=2", "train.full_fit=true",
                   "train.seeds=[3,4]") == 0, capsys.readouterr().err
    run = workdir / "outputs" / "ff_full"
    cv = json.loads((run / "cv.json").read_text())
    assert cv["kind"] == "full_fit" and cv["cv_source"] == "ff" and cv["seeds"] == [3, 4]
    assert cv["epochs"] == max(1, int(round(float(np.median(best)))))
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 2 * cv["epochs"] and sorted(history["seed"].unique()) == [3, 4]
    a = torch.load(run / "seed3" / "model.pt", weights_only=True)["model"]
    b = torch.load(run / "seed4" / "model.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[n], b[n]) for n in a if a[n].is_floating_point())  # seeds differ
    cfg = config.load("ff", tiny)
    test = pd.read_csv(f"{cfg.data.dir}/test.csv", dtype={cfg.data.id_col: str})
    preds = pd.read_csv(run / "test_preds.csv", dtype={cfg.data.id_col: str})
    assert preds[cfg.data.id_col].tolist() == test[cfg.data.id_col].tolist() and not preds.isna().any().any()
    assert run_cli("submit", "--exp", "ff_full") == 0
    assert run_cli("pseudo", "--exp", "ff_full") == 2  # no per-fold models: a pseudo round would leak
