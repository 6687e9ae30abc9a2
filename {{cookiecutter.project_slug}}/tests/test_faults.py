"""Nothing silent, nothing half-written: make variables, pandas' NA guesses, checks before training, faults of
the machine (full disk, read-only folder, Ctrl-C), one writer per experiment, and no traceback on screen.
Each test names a class of input; each asserts the exit code, the message and what was (not) left behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import PKG_NAME, PROJECT, like_demo, mod, run_cli

ConfigError, DataError = mod("core.errors").ConfigError, mod("core.errors").DataError
labels, lock, splits, config = mod("core.labels"), mod("core.lock"), mod("data.splits"), mod("core.config")
TASK = config.load(config_dir=PROJECT / "configs").task
ENV = {**os.environ, "PYTHONPATH": str(PROJECT / "src"), "PYTHONUNBUFFERED": "1"}


def _stage(cwd: Path, *argv: str, prefix: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", PKG_NAME, *argv], cwd=cwd, env=ENV, capture_output=True,
                          text=True, **kw)


def _one_line(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr.strip().splitlines()[-1]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")] if root.exists() else []


# 1. make variables ---------------------------------------------------------------------------------
@pytest.mark.slow  # problem-agnostic: runs in the one image and one text project that run the slow tests
def test_make_variables_empty_spaced_or_colliding_are_refused_before_anything_runs(tiny, workdir, capsys):
    make = ["make", "-f", str(PROJECT / "Makefile"), f"PYTHON={sys.executable}"]
    done = subprocess.run([*make, "train", "EXP=", f"ARGS={' '.join(tiny)}"], cwd=workdir, env=ENV,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "EXP is empty" in done.stderr and "Traceback" not in done.stderr
    assert not (workdir / "outputs").exists()  # today's bug: the first ARGS item became the experiment
    for argv, var in ((["train", "--exp", "two words", *tiny], "EXP='two words'"),
                      (["train", "--exp", "a/b", *tiny], "EXP='a/b'"),
                      (["train", "--exp", "eda", *tiny], "another stage writes"),
                      (["train", "--exp", "sanity_x", *tiny], "another stage writes"),
                      (["ensemble", "--name", "ens 1", "--exps", "a b"], "NAME='ens 1'"),
                      (["ensemble", "--name", "ens", "--exps", "a b/c"], "EXPS='b/c'"),
                      (["leaderboard", "--base", "../x"], "BASE='../x'")):
        assert run_cli(argv[0], *argv[1:]) == 2
        assert var in capsys.readouterr().err
    done = _stage(workdir, "ensemble", "--name", "--exps", "a b")
    assert done.returncode == 2 and "NAME is empty" in _one_line(done)
    assert not (workdir / "outputs").exists()


# 2. values are data, not pandas' guesses -----------------------------------------------------------
def test_na_like_strings_are_values_and_one_label_written_two_ways_is_refused(data_copy, workdir, tiny):
    cfg = config.load("demo", [*tiny, f"data.dir={data_copy}"])
    train = pd.read_csv(data_copy / "train.csv", dtype=str, keep_default_na=False)
    ids = ["NA", "None", "null", "N/A"]
    train.loc[:3, cfg.data.id_col] = ids
    if TASK == "text":
        train.loc[:3, cfg.data.text_cols[0]] = ["NA", "null", "None", "nan"]
    train.to_csv(data_copy / "train.csv", index=False)
    df = mod("data.files").load_train(cfg)
    assert df[cfg.data.id_col].tolist()[:4] == ids  # ids, not NaN (which would read as an empty id)
    if TASK == "text":
        assert mod("modality.text").join_texts(df.iloc[:4], cfg.data.text_cols, "[SEP]") == ["NA", "null", "None", "nan"]
    frame = pd.DataFrame({"id": list("abcdef"), "label": ["None", "1", "1.0", "1", "cat ", "cat"]})
    with pytest.raises(DataError, match=r"one label in several ways: '1' \(2 rows\) and '1.0' \(1 rows\)"):
        labels.LabelMap.fit("multiclass", ["label"], frame, "id")
    with pytest.raises(DataError, match="one label in several ways") as e:
        labels.LabelMap.fit("multiclass", ["label"], frame.iloc[[0, 4, 5]], "id")
    assert "'cat ' (1 rows)" in str(e.value) and "'cat' (1 rows)" in str(e.value)
    fitted = labels.LabelMap.fit("binary", ["label"], frame.iloc[[0, 1, 3]], "id")
    assert fitted.classes == ["1", "None"]  # "None" is a label like any other


# 3. checks that can be known before training run before training -----------------------------------
def test_what_is_known_before_training_is_refused_before_a_fold_trains(data_copy, workdir, tiny):
    test = pd.read_csv(data_copy / "test.csv", dtype=str, keep_default_na=False)
    test.iloc[:0].to_csv(data_copy / "test.csv", index=False)
    done = _stage(workdir, "train", "--exp", "demo", *tiny, f"data.dir={data_copy}")
    assert done.returncode == 2 and "test.csv has a header but no rows" in _one_line(done)
    assert not [p for p in (workdir / "outputs").rglob("*")]  # nothing written (the lock came and went)
    frame = lambda v: pd.DataFrame({"id": [str(i) for i in range(len(v))], "y": v})  # noqa: E731
    with pytest.raises(DataError, match="one value in every row"):
        labels.LabelMap.fit("regression", ["y"], frame([2.5] * 6), "id")
    with pytest.raises(DataError, match="beyond float32's range"):
        labels.LabelMap.fit("regression", ["y"], frame([1.0, 2.0, 1e39]), "id")
    cfg = config.load("demo", [*tiny, "problem=binary", "metric=roc_auc", "train.n_folds=2",
                               "data.target_cols=[y]"])
    lm = labels.LabelMap.fit("binary", ["y"], frame(["a", "b", "a", "a"]), "id")
    folds = pd.DataFrame({"id": ["0", "1", "2", "3"], "fold": [0, 0, 1, 1]})  # fold 1 holds only 'a'
    with pytest.raises(DataError, match="roc_auc is undefined for fold 1's validation rows: column 'y' holds only a"):
        splits.check_fold_classes(cfg, frame(["a", "b", "a", "a"]), folds, lm)
    cfg = config.load("demo", [*tiny, "problem=multilabel", "metric=roc_auc", "train.n_folds=2",
                               "data.target_cols=[t0,t1]"])
    ml = pd.DataFrame({"id": ["0", "1", "2", "3"], "t0": [0, 1, 0, 1], "t1": [0, 0, 0, 0]})
    lm = labels.LabelMap.fit("multilabel", ["t0", "t1"], ml, "id")
    with pytest.raises(DataError, match=r"undefined for train.csv: column 't1' holds only \[0.0\]"):
        splits.check_fold_classes(cfg, ml, folds, lm)


# 4. faults of the machine ---------------------------------------------------------------------------
def _namespaces() -> str | None:
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True) if shutil.which("unshare") else None
    return None if probe is not None and probe.returncode == 0 else "this machine allows no mount namespace " \
        "(unshare -rm), so no small or read-only file system can be made for the test"


@pytest.mark.slow
@pytest.mark.parametrize("mount, says", [("size=96k", "No space left on device"),
                                         ("ro", "Read-only file system")])
def test_a_full_disk_or_read_only_outputs_folder_is_one_line_and_leaves_no_temp_file(tiny, workdir, mount, says):
    reason = _namespaces()
    if reason:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    outputs = workdir / "small"
    outputs.mkdir()
    args = " ".join(f"'{a}'" for a in ["train", "--exp", "demo", *tiny, f"paths.outputs={outputs}",
                                       f"paths.folds={workdir / 'folds'}"])
    script = f"mount -t tmpfs -o {mount} tmpfs {outputs} || exit 9; {sys.executable} -m {PKG_NAME} {args}; " \
             f"rc=$?; echo; ls -aR {outputs} >&2; exit $rc"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=workdir, env=ENV, capture_output=True,
                          text=True)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert says in lines[-1] and ("RESUME=1" in lines[-1] or "paths.outputs" in lines[-1])
    assert ".tmp" not in done.stderr.split(lines[-1])[-1]  # the listing of the small disk after the failure


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tiny, workdir):
    like_demo("long")
    proc = subprocess.Popen([sys.executable, "-m", PKG_NAME, "train", "--exp", "long", *tiny, "train.epochs=200"],
                            cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a test runner may ignore SIGINT, and children inherit that: restore the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = workdir / "outputs/long/fold0/last.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "interrupted (Ctrl-C)" in last and "make train EXP=long RESUME=1" in last
    assert not _temp_files(workdir / "outputs")
    assert json.loads((workdir / "outputs/long/run.json").read_text())["status"].startswith("failed: KeyboardInterrupt")
    done = _stage(workdir, "train", "--exp", "long", *tiny, "train.epochs=200")
    assert done.returncode == 2 and "continue it with RESUME=1" in _one_line(done)


# 5. one writer per experiment -----------------------------------------------------------------------
def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(tiny, workdir, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = lock.lock_file(workdir / "outputs" / "demo")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "stage": "train",
                                    "since": "now"}))
        for argv in (["train", "--exp", "demo", *tiny, "overwrite=true"], ["predict", "--exp", "demo"]):
            assert run_cli(*argv) == 2
            assert f"being written by make train (pid {holder.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in (workdir / "outputs").iterdir()) == [".demo.lock"]
    finally:
        holder.kill()
        holder.wait()
    with lock.hold(workdir / "outputs" / "demo", "train"):  # the holder is gone: stale, taken over
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with lock.hold(workdir / "outputs" / "demo", "predict"):  # the same process: kept, not refused
            pass
        assert path.exists()
    assert not path.exists()
    assert "took over the stale lock" in capsys.readouterr().err


# 6. no traceback -------------------------------------------------------------------------------------
def test_an_unexpected_exception_is_one_line_naming_the_file_with_its_traceback(tiny, workdir, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("something nobody foresaw")
    monkeypatch.setattr(mod("folds"), "load_or_make_folds", boom)
    assert run_cli("folds", "--exp", "demo", *tiny) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected RuntimeError: something nobody foresaw in make folds" in err[0]
    log = workdir / err[0].split("the traceback is in ")[1].split(" (please")[0]
    assert log.parent == workdir / "outputs" / "errors" and "Traceback" in log.read_text()


def test_an_interrupted_run_is_offered_resume_before_overwrite(workdir):
    paths = mod("core.rundir").RunPaths(config.load("demo"))
    (paths.dir / "fold0").mkdir(parents=True)
    paths.config.write_text("{}")
    with pytest.raises(ConfigError, match=r"continue it with RESUME=1 \(make train EXP=demo RESUME=1\), or choose"):
        mod("core.rundir").refuse_existing(paths, overwrite=False)
    paths.cv.write_text("{}")
    with pytest.raises(ConfigError) as e:
        mod("core.rundir").refuse_existing(paths, overwrite=False)
    assert "RESUME" not in str(e.value)
    np.testing.assert_equal(len(list(paths.dir.iterdir())), 3)


@pytest.mark.slow
def test_nproc_2_ends_with_the_processes_own_line_not_torchruns_traceback(tiny, workdir):
    done = _stage(workdir, "train", "--exp", "demo", *tiny, "no.such=1")  # one process, then two as NPROC=2 runs it
    assert done.returncode == 2 and "unknown config key 'no'" in _one_line(done)
    launched = subprocess.run([sys.executable, "-m", f"{PKG_NAME}.core.launch", "--standalone", "--nproc_per_node=2",
                               "-m", f"{PKG_NAME}.train", "--exp", "demo", *tiny, "no.such=1"], cwd=workdir,
                              env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert launched.returncode == 2 and "Traceback" not in launched.stderr, launched.stderr[-2000:]
    assert "unknown config key 'no'" in launched.stderr
    assert launched.stderr.strip().splitlines()[-1].startswith("error: 2 of the processes failed")
