"""make eda: the report's sections, duplicates injected between train and test, and adversarial validation that
sees no shift in the demo split and a clear one when test is made to look different."""
import json
import shutil

import pandas as pd

from helpers import mod, run_cli

config = mod("core.config")
SECTIONS = ["# Data report", "## Missing values", "## Target", "## Duplicates", "## Train / test shift",
            "Adversarial validation"]


def run_eda(workdir, tiny, *extra):
    assert run_cli("eda", "--exp", "demo", *tiny, *extra) == 0
    out = workdir / "outputs" / "eda"
    return (out / "report.md").read_text(), json.loads((out / "summary.json").read_text()), out


def test_eda_writes_every_section_and_sees_no_shift_in_the_demo_split(tiny, workdir):
    report, summary, out = run_eda(workdir, tiny)
    cfg = config.load("demo", tiny)
    for heading in SECTIONS + (["## Images", "samples.png"] if cfg.task == "image" else ["## Text lengths"]):
        assert heading in report, heading
    pngs = ["target.png", "shift.png"] + (["samples.png"] if cfg.task == "image" else ["lengths.png"])
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert summary["train_rows"] == 480 and summary["test_rows"] == 120
    assert summary["duplicates"]["train_test_exact"] == 0
    assert summary["shift"]["adversarial_auc"] < 0.7  # one random split of one generator: no shift to find
    if cfg.task == "text":
        assert summary["text"]["max_len_95"] <= summary["text"]["max_len_99"]
        assert f"(now {cfg.data.max_len})" in report
    else:  # the demo's own augmentation (none: digits) is listed with what each transform would assume
        assert "### Training augmentations" in report and "no per-image training augmentation" in report
        assert summary["image"]["augmentations"] == ["no per-image training augmentation (aug.train)"]


def other_label(value: str, column: pd.Series, problem: str) -> str:
    if problem == "regression":
        return str(float(value) + 1.0)
    if problem == "multilabel":
        return "0" if value == "1" else "1"
    return next(v for v in column.unique() if v != value)


def test_eda_finds_a_train_row_copied_into_test_and_conflicting_labels(tiny, workdir, data_copy):
    cfg = config.load("demo", tiny)
    train = pd.read_csv(data_copy / "train.csv", dtype=str)
    test = pd.read_csv(data_copy / "test.csv", dtype=str)
    copied = train.iloc[[1]][test.columns].assign(**{cfg.data.id_col: "dup_test"})
    if cfg.task == "image":  # a new file with the same bytes: found by content, not by path
        shutil.copy(data_copy / train[cfg.data.image_col].iloc[1], data_copy / "images" / "dup_test.png")
        copied[cfg.data.image_col] = "images/dup_test.png"
    pd.concat([test, copied]).to_csv(data_copy / "test.csv", index=False)
    relabelled = train.iloc[[0]].assign(**{cfg.data.id_col: "dup_train"})
    col = cfg.data.target_cols[0]
    relabelled[col] = other_label(train[col].iloc[0], train[col], cfg.problem)
    pd.concat([train, relabelled]).to_csv(data_copy / "train.csv", index=False)

    report, summary, _ = run_eda(workdir, tiny, f"data.dir={data_copy}")
    dups = summary["duplicates"]
    assert "dup_test" in dups["train_test_exact_ids"]
    assert dups["conflicting_groups"] >= 1 and dups["train_exact_rows"] >= 2
    assert "dup_test" in report and "dup_train" in report


def test_adversarial_validation_sees_a_test_file_that_looks_different(tiny, workdir, data_copy):
    cfg = config.load("demo", tiny)
    test = pd.read_csv(data_copy / "test.csv", dtype=str)
    if cfg.task == "image":
        from PIL import Image, ImageOps
        for rel in test[cfg.data.image_col]:  # demo test images are files of their own
            path = data_copy / rel
            ImageOps.invert(Image.open(path).convert("L")).save(path)
    else:
        for c in cfg.data.text_cols:
            test[c] = test[c].str.upper() + " scanned from the archive"
        test.to_csv(data_copy / "test.csv", index=False)
    report, summary, _ = run_eda(workdir, tiny, f"data.dir={data_copy}")
    assert summary["shift"]["adversarial_auc"] > 0.9
    assert "strong shift" in report
