"""Bad input fails before training with a message naming what to fix, exit code 2, nothing written."""
import pandas as pd
import pytest

from helpers import like_demo, run_cli

from conftest import TARGET_OVERRIDE  # noqa: F401 - keeps the demo's multilabel columns


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


def _target(tiny):
    for a in tiny:
        if a.startswith("data.target_cols="):
            return a.split("=[")[1].split(",")[0]
    return "target"


def test_missing_column_names_file_and_column(data_copy, tiny, capsys):
    col = _target(tiny)
    _edit(data_copy / "train.csv", lambda df: df.drop(columns=[col], inplace=True))
    err = _train_fails(data_copy, tiny, capsys)
    assert "train.csv" in err and col in err


def test_missing_id_column_in_test_csv(data_copy, tiny, capsys):
    _edit(data_copy / "test.csv", lambda df: df.rename(columns={"id": "ident"}, inplace=True))
    err = _train_fails(data_copy, tiny, capsys)
    assert "test.csv" in err and "'id'" in err or "['id']" in err


def test_nan_target_names_the_line(data_copy, tiny, capsys):
    col = _target(tiny)
    _edit(data_copy / "train.csv", lambda df: df.__setitem__(col, df[col].where(df.index != 3, "")))
    err = _train_fails(data_copy, tiny, capsys)
    assert "line 5" in err and col in err


def test_whitespace_target_is_empty(data_copy, tiny, capsys):
    col = _target(tiny)
    _edit(data_copy / "train.csv", lambda df: df.__setitem__(col, df[col].where(df.index != 0, "   ")))
    err = _train_fails(data_copy, tiny, capsys)
    assert "empty" in err and "line 2" in err


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


def test_sample_submission_with_other_ids(data_copy, tiny, capsys):
    _edit(data_copy / "sample_submission.csv", lambda df: df.__setitem__("id", df["id"] + "x"))
    err = _train_fails(data_copy, tiny, capsys)
    assert "sample_submission.csv" in err and "different ids" in err


def test_missing_data_dir_says_which_key_to_set(tmp_path, tiny, capsys):
    err = _train_fails(tmp_path / "nowhere", tiny, capsys)
    assert "data.dir" in err
