"""Bad input fails before training with a message naming what to fix, exit code 2, nothing written."""
import json

import pandas as pd
import pytest
import torch

from helpers import like_demo, mod, run_cli


def _train_fails(data_dir, tiny, capsys, *extra) -> str:
    like_demo("bad")
    code = run_cli("train", "--exp", "bad", *tiny, f"data.dir={data_dir}", *extra)
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (pytest.workdir / "outputs" / "bad").exists(), "a failed run left outputs behind"
    assert not (pytest.workdir / "folds").exists(), "a failed run left a folds file behind"
    return err


@pytest.fixture(autouse=True)
def _remember_workdir(workdir):
    pytest.workdir = workdir


def _edit(path, fn):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df)
    df.to_csv(path, index=False)


def _feature(tiny):
    cfg = mod("core.config").load("demo", tiny)
    return cfg.data.image_col if cfg.task == "image" else cfg.data.text_cols[0]


def _target(tiny):
    for a in tiny:
        if a.startswith("data.target_cols="):
            return a.split("=[")[1].split(",")[0]
    return "target"


@pytest.mark.parametrize("file, col", [("train.csv", "target"), ("test.csv", "id"), ("test.csv", "feature")])
def test_missing_column_names_file_and_column(data_copy, tiny, capsys, file, col):
    col = {"target": _target(tiny), "feature": _feature(tiny)}.get(col, col)
    _edit(data_copy / file, lambda df: df.drop(columns=[col], inplace=True))
    err = _train_fails(data_copy, tiny, capsys)
    assert file in err and f"['{col}']" in err


@pytest.mark.parametrize("damage", ["repeated header name", "trailing comma"])
def test_extra_columns_pandas_would_misread_are_refused(data_copy, tiny, capsys, damage):
    path = data_copy / "train.csv"
    lines = path.read_text().splitlines()
    if damage == "repeated header name":
        lines[0] = lines[0].replace(_target(tiny), "id", 1)
        expected = "['id'] more than once"
    else:  # pandas would take the ids for an index and shift every column name by one
        lines[1:] = [line + "," for line in lines[1:]]
        expected = "line 2, line 3"
    path.write_text("\n".join(lines) + "\n")
    err = _train_fails(data_copy, tiny, capsys)
    assert "train.csv" in err and expected in err


@pytest.mark.parametrize("value", ["", "   ", "NaN"])
def test_empty_or_nan_target_names_the_line(data_copy, tiny, capsys, value):
    col = _target(tiny)
    _edit(data_copy / "train.csv", lambda df: df.__setitem__(col, df[col].where(df.index != 3, value)))
    err = _train_fails(data_copy, tiny, capsys)
    assert "empty or NaN" in err and "line 5" in err and col in err


def _regression_target(data_copy, tiny, bad_value) -> list[str]:
    """Any baked demo made a regression on a new column 'score', with one bad value on line 5."""
    def add(df):
        df["score"] = [str(i % 7) for i in range(len(df))]
        df.loc[3, "score"] = bad_value
    _edit(data_copy / "train.csv", add)
    return [*tiny, "problem=regression", "metric=rmse", "data.target_cols=[score]"]


def test_infinite_regression_target_names_the_line(data_copy, tiny, capsys):
    err = _train_fails(data_copy, _regression_target(data_copy, tiny, "inf"), capsys)
    assert "'score'" in err and "infinite" in err and "line 5" in err


def test_non_numeric_regression_target_names_the_line(data_copy, tiny, capsys):
    err = _train_fails(data_copy, _regression_target(data_copy, tiny, "high"), capsys)
    assert "'score'" in err and "non-numeric" in err and "line 5" in err


def test_duplicate_ids_are_named(data_copy, tiny, capsys):
    def dup(df):
        df.loc[1, "id"] = df.loc[0, "id"]
    _edit(data_copy / "train.csv", dup)
    err = _train_fails(data_copy, tiny, capsys)
    assert "duplicate ids" in err and "line 2" in err and "line 3" in err


def test_more_folds_than_a_class_has_members(data_copy, tiny, capsys):
    col = _target(tiny)
    _edit(data_copy / "train.csv", lambda df: df.__setitem__(col, df[col].where(df.index != 0, "rare_label")))
    extra = [a for a in tiny if not a.startswith("data.target_cols")] + [f"data.target_cols=[{col}]"]
    err = _train_fails(data_copy, extra, capsys, "problem=multiclass", "metric=accuracy")
    assert "rare_label" in err and "train.n_folds" in err


def test_test_labels_outside_the_train_label_map_are_refused(data_copy, tiny, capsys):
    col = _target(tiny)
    _edit(data_copy / "test.csv", lambda df: df.__setitem__(col, ["never_seen"] + [""] * (len(df) - 1)))
    classification = [a for a in tiny if not a.startswith("data.target_cols")] + [f"data.target_cols=[{col}]"]
    err = _train_fails(data_copy, classification, capsys, "problem=multiclass", "metric=accuracy")
    assert "test.csv" in err and "['never_seen'] outside the training label map" in err and "line 2" in err


def test_sample_submission_with_other_ids(data_copy, tiny, capsys):
    _edit(data_copy / "sample_submission.csv", lambda df: df.__setitem__("id", df["id"] + "x"))
    err = _train_fails(data_copy, tiny, capsys)
    assert "sample_submission.csv" in err and "different ids" in err


def test_sample_submission_with_duplicate_ids(data_copy, tiny, capsys):
    def dup(df):
        df.loc[4, "id"] = df.loc[0, "id"]
    _edit(data_copy / "sample_submission.csv", dup)
    err = _train_fails(data_copy, tiny, capsys)
    assert "sample_submission.csv" in err and "duplicate ids" in err and "line 2" in err and "line 6" in err


def test_sample_submission_with_columns_the_experiment_cannot_fill(data_copy, tiny, capsys):
    _edit(data_copy / "sample_submission.csv", lambda df: df.__setitem__("confidence", "0"))
    err = _train_fails(data_copy, tiny, capsys)
    assert "sample_submission.csv" in err and "'confidence'" in err and "this experiment predicts" in err


def test_label_map_at_inference_must_be_the_training_one(tiny, capsys):
    """labels.json edited after training, predictions or a checkpoint of another map: predict and submit refuse."""
    like_demo("lm")
    run = pytest.workdir / "outputs" / "lm"
    for stage in ("train", "predict"):
        assert run_cli(stage, "--exp", "lm", *tiny, "train.folds=[0]", "train.epochs=1") == 0
    labels_json, test_preds = (run / "labels.json").read_text(), (run / "test_preds.csv").read_text()
    labels = json.loads(labels_json)
    n = len(labels["classes"] or labels["target_cols"])
    grown = {k: v + v[:1] if isinstance(v, list) else v for k, v in labels.items()}
    grown["classes" if labels["classes"] else "target_cols"][-1] = "new"
    capsys.readouterr()

    (run / "labels.json").write_text(json.dumps(grown))
    for stage in ("predict", "submit"):
        assert run_cli(stage, "--exp", "lm") == 2
        err = capsys.readouterr().err
        assert "labels.json predicts" in err and "trained for" in err, err
    (run / "labels.json").write_text(labels_json)

    (run / "test_preds.csv").write_text(test_preds.replace(",", ",x", 1))  # first prediction column renamed
    assert run_cli("submit", "--exp", "lm") == 2
    assert "test_preds.csv holds columns" in capsys.readouterr().err
    assert not (pytest.workdir / "submissions" / "lm.csv").exists()
    (run / "test_preds.csv").write_text(test_preds)

    ckpt = run / "fold0" / "best.pt"
    state = torch.load(ckpt, weights_only=True)
    head = [k for k, v in state["model"].items() if v.ndim and v.shape[0] == n][-2:]  # the head's weight, bias
    for k in head:
        state["model"][k] = torch.cat([state["model"][k], state["model"][k][:1]])
    torch.save(state, ckpt)
    assert run_cli("predict", "--exp", "lm") == 2
    err = capsys.readouterr().err
    assert "best.pt does not fit the run's labels.json" in err and head[-1] in err
    assert (run / "test_preds.csv").read_text() == test_preds


def test_missing_data_dir_says_which_key_to_set(tmp_path, tiny, capsys):
    err = _train_fails(tmp_path / "nowhere", tiny, capsys)
    assert "data.dir" in err
