"""Reproducibility and resume: the same seed gives the same bytes; a run killed anywhere and resumed
with RESUME=1 ends with the OOF, CV and submission of the run that was never interrupted."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TARGET_OVERRIDE
from helpers import PROJECT, inside, like_demo, mod, run_cli

config, resume, runs, atomic = mod("core.config"), mod("training.checkpoints"), mod("core.rundir"), mod("core.atomic")
TASK = config.load(config_dir=PROJECT / "configs").task
KILLED = 137



def stage(root: Path, name: str, exp: str, args: list[str], *flags: str) -> None:
    with inside(root):
        code = run_cli(name, "--exp", exp, *flags, *args)
    assert code == 0, f"{name} {exp} exited {code}"


def crash(root: Path, point: str, n: str, exp: str, args: list[str]) -> subprocess.CompletedProcess:
    """`train` in a child process that dies like kill -9 at the n-th `point` (tests/crash_run.py)."""
    return subprocess.run([sys.executable, str(PROJECT / "tests" / "crash_run.py"), point, n, "--exp", exp,
                           *args], cwd=root, capture_output=True, text=True, timeout=900)


def outputs(root: Path, exp: str) -> dict:
    run = root / "outputs" / exp
    cv = {k: v for k, v in json.loads((run / "cv.json").read_text()).items() if k != "wall_seconds"}
    return {"oof": (run / "oof_preds.csv").read_bytes(), "cv": cv,
            "test": (run / "test_preds.csv").read_bytes() if (run / "test_preds.csv").exists() else None,
            "submission": (root / "submissions" / f"{exp}.csv").read_bytes()
            if (root / "submissions" / f"{exp}.csv").exists() else None}


@pytest.fixture(scope="module")
def scratch(demo_dir, tmp_path_factory):
    """A scratch project: 2 folds x 2 epochs with EMA (and flips for images), so every state has to come back."""
    root = tmp_path_factory.mktemp("resume")
    shutil.copytree(PROJECT / "configs", root / "configs")
    args = [f"data.dir={demo_dir}", *TARGET_OVERRIDE, "train.progress=false", "train.epochs=2",
            "train.folds=[0,1]", "ema.enabled=true", "ema.decay=0.9"]
    if TASK == "text":
        args.append(f"model.name={demo_dir / 'tiny_bert'}")
    else:
        args.append("aug.train=[{name: HorizontalFlip, p: 0.5}, {name: RandomBrightnessContrast, p: 0.5}]")
    with inside(root):
        like_demo("ref", "again", "seed7", "step", "fold", "save")
    for exp in ("ref", "again"):
        for name in ("train", "predict", "submit"):
            stage(root, name, exp, args)
    stage(root, "train", "seed7", args + ["seed=7"])
    return root, args


@pytest.mark.slow
def test_the_same_seed_gives_byte_identical_folds_oof_test_predictions_and_submission(scratch):
    root, args = scratch
    ref, again = outputs(root, "ref"), outputs(root, "again")
    assert again == ref
    folds = (root / "outputs" / "ref" / "folds.csv").read_bytes()
    assert (root / "outputs" / "again" / "folds.csv").read_bytes() == folds
    # the folds file from scratch, in another folder, is the same file
    other = root / "refolds"
    shutil.copytree(root / "configs", other / "configs")
    stage(other, "folds", "ref", args)
    (made,) = (other / "folds").glob("*.csv")
    assert made.read_bytes() == next((root / "folds").glob("*.csv")).read_bytes()


@pytest.mark.slow
def test_a_different_seed_changes_the_oof_but_not_the_folds(scratch):
    root, _ = scratch
    seed7 = root / "outputs" / "seed7"
    assert (seed7 / "oof_preds.csv").read_bytes() != outputs(root, "ref")["oof"]
    assert (seed7 / "folds.csv").read_bytes() == (root / "outputs" / "ref" / "folds.csv").read_bytes()


# (crash point, n): step 3 of the 4th epoch run = fold 1's 2nd epoch (fold 0 done, fold 1 has a resume point
# at epoch 1); right after fold 0 is marked done; a torn write of the 2nd resume point (fold 1, epoch 1: a fold's
# last epoch writes none, its done.json follows)
CRASHES = {"step": "4:3", "fold": "1", "save": "2"}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(CRASHES))
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_result(scratch, point):
    root, args = scratch
    done = crash(root, point, CRASHES[point], point, args)
    assert done.returncode == KILLED, done.stderr[-3000:]
    run = root / "outputs" / point
    assert not (run / "cv.json").exists()
    if point == "save":
        torn = list(run.rglob(".last.pt*.tmp"))
        assert torn, "the torn write should have left its temp file behind"
    if point == "fold":
        assert (run / "fold0" / "done.json").exists() and not (run / "fold1").exists()
    if point == "step":
        assert (run / "fold0" / "done.json").exists() and (run / "fold1" / "last.pt").exists()

    stage(root, "train", point, args, "--resume")
    for name in ("predict", "submit"):
        stage(root, name, point, args)
    got, ref = outputs(root, point), outputs(root, "ref")
    assert got["oof"] == ref["oof"]
    assert got["cv"]["cv"] == ref["cv"]["cv"] and got["cv"]["folds"] == ref["cv"]["folds"]
    assert got["cv"]["best_epochs"] == ref["cv"]["best_epochs"]
    assert got["test"] == ref["test"] and got["submission"] == ref["submission"]
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("last.pt"))
    # the whole trajectory, not only the best epochs: same losses, scores and lr in every epoch
    history, ref_history = (pd.read_csv(r / "history.csv", float_precision="round_trip").drop(columns="seconds")
                            for r in (run, root / "outputs" / "ref"))
    assert history[["fold", "epoch"]].values.tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]
    pd.testing.assert_frame_equal(history, ref_history, check_exact=True)
    record = json.loads((run / "run.json").read_text())
    assert len(record["resumes"]) == 1 and record["status"] == "finished"


@pytest.mark.slow
@pytest.mark.skipif(TASK != "image", reason="text batches are tokenised up front, without worker processes")
def test_workers_change_no_number_and_a_run_with_workers_resumes_exactly(scratch):
    """Training items carry their augmentation seeds from the sampler, so worker processes (kept across epochs)
    draw nothing of their own: 2 workers give the bytes of none, also killed in fold 1's 2nd epoch and resumed
    with new workers."""
    root, args = scratch
    workers = [*args, "train.num_workers=2"]
    with inside(root):
        like_demo("workers")
    done = crash(root, "step", CRASHES["step"], "workers", workers)
    assert done.returncode == KILLED, done.stderr[-3000:]
    stage(root, "train", "workers", workers, "--resume")
    for name in ("predict", "submit"):
        stage(root, name, "workers", workers)
    got, ref = outputs(root, "workers"), outputs(root, "ref")
    assert got["oof"] == ref["oof"] and got["test"] == ref["test"] and got["submission"] == ref["submission"]
    assert got["cv"]["folds"] == ref["cv"]["folds"]


def _saved_run(workdir: Path, overrides: list[str]):
    """A run folder as training leaves it at its start: config.yaml, folds.csv, run.json."""
    cfg = config.load("demo", overrides)
    paths = runs.RunPaths(cfg)
    paths.dir.mkdir(parents=True)
    atomic.write_text(paths.config, config.dump(cfg))
    folds = pd.DataFrame({"id": [str(i) for i in range(6)], "fold": [0, 1, 0, 1, 0, 1]})
    atomic.write_csv(paths.folds, folds)
    atomic.write_json(paths.run_record, {"data": {"data/train.csv": "abc"}})
    return cfg, paths, folds


@pytest.mark.parametrize("change", ["seed=1", "model.drop_rate=0.3", "train.lr=0.5", "data.fold_seed=3",
                                    "data.image_size=48" if TASK == "image" else "data.max_len=48"])
def test_resuming_with_a_changed_setting_is_refused_naming_the_key(workdir, change):
    cfg, paths, folds = _saved_run(workdir, [])
    changed = config.load("demo", [change])
    with pytest.raises(config.ConfigError, match=f"'{change.split('=')[0]}'"):
        resume.check_resumable(changed, paths, folds, {})


def test_resuming_with_changed_logging_or_inference_settings_is_fine(workdir):
    cfg, paths, folds = _saved_run(workdir, [])
    ok = config.load("demo", ["train.progress=true", "train.num_workers=3", "train.save_every=4", "track.backends=[]",
                              "tta.views=[identity,hflip]" if TASK == "image" else "tta.views=[identity,tail]",
                              "submit.threshold=0.3"])
    resume.check_resumable(ok, paths, folds, {"data/train.csv": "abc"})


def test_resuming_with_changed_data_or_folds_is_refused(workdir):
    cfg, paths, folds = _saved_run(workdir, [])
    with pytest.raises(config.ConfigError, match="train.csv changed"):
        resume.check_resumable(cfg, paths, folds, {"data/train.csv": "def"})
    moved = folds.assign(fold=folds["fold"].iloc[::-1].to_numpy())
    with pytest.raises(config.ConfigError, match="folds differ"):
        resume.check_resumable(cfg, paths, moved, {})


def test_resume_without_a_run_or_of_a_finished_run_says_so(tiny, workdir, capsys):
    like_demo("nothing")
    assert run_cli("train", "--exp", "nothing", "--resume", *tiny) == 2
    assert "no run to resume" in capsys.readouterr().err
    cfg, paths, folds = _saved_run(workdir, [])
    atomic.write_json(paths.cv, {"cv": 1.0})
    with pytest.raises(config.ConfigError, match="finished"):
        resume.check_resumable(cfg, paths, folds, {})


def test_the_writer_thread_saves_what_was_there_when_queued_and_raises_its_failure_in_the_training_thread(tmp_path):
    saver = mod("training.saver")
    live = {"w": torch.zeros(1000), "rows": [1]}
    writer = saver.Saver()
    writer.save((tmp_path / "a.pt", saver.snapshot(live)))
    live["w"] += 1  # the next steps change the weights in place while the file is written
    live["rows"].append(2)
    writer.flush()
    saved = torch.load(tmp_path / "a.pt", weights_only=False)
    assert torch.equal(saved["w"], torch.zeros(1000)) and saved["rows"] == [1]
    (tmp_path / "file").write_text("not a folder")
    writer.save((tmp_path / "file" / "b.pt", saver.snapshot(live)))  # queued: the failure comes later
    with pytest.raises(OSError):
        writer.flush()
    writer.flush()  # raised once; the writer goes on
    writer.save((tmp_path / "c.pt", {"n": 3}), (tmp_path / "d.pt", {"n": 4}))
    writer.flush()
    assert torch.load(tmp_path / "d.pt")["n"] == 4 and not list(tmp_path.glob(".*.tmp"))


def test_each_epoch_but_the_folds_last_queues_best_pt_then_its_resume_point(tiny, workdir, monkeypatch):
    saver, written = mod("training.saver"), []
    real = saver.write
    monkeypatch.setattr(saver, "write", lambda path, obj: written.append(path.name) or real(path, obj))
    like_demo("writes")
    assert run_cli("train", "--exp", "writes", *tiny, "train.folds=[0]", "train.epochs=3") == 0
    history = pd.read_csv(workdir / "outputs" / "writes" / "history.csv")
    improved = history["score"].cummax().diff().fillna(1).gt(0).tolist()  # the first epoch always improves
    if not mod("core.metrics").METRICS[config.load("writes", tiny).metric].greater_is_better:
        improved = history["score"].cummin().diff().fillna(-1).lt(0).tolist()
    # epochs 1 and 2: best.pt (when it improved) before last.pt; epoch 3, the last: best.pt only, then done.json
    expected = [n for e in (0, 1) for n in (["best.pt"] if improved[e] else []) + ["last.pt"]]
    expected += ["best.pt"] if improved[2] else []
    assert written == expected
    assert not (workdir / "outputs" / "writes" / "fold0" / "last.pt").exists()
