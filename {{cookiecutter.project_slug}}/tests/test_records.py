"""The run record: run.json names the command, commit, packages, hardware, times and data hashes;
code.diff holds the uncommitted changes; no git, or no checkout, is not an error."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from helpers import mod

config, records, runs, atomic = mod("core.config"), mod("core.records"), mod("core.rundir"), mod("core.atomic")
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def paths(workdir, monkeypatch):
    # git answers from this folder only: no user or system config, no parent repository
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(workdir.parent))
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "test@example.com")
    return runs.RunPaths(config.load("demo"))


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def commit_project(workdir) -> str:
    git("init", "-q")
    (workdir / ".gitignore").write_text("outputs/\n")
    (workdir / "model.py").write_text("lr = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    return git("rev-parse", "HEAD").strip()


@needs_git
def test_run_json_names_the_commit_and_code_diff_restores_the_uncommitted_changes(workdir, paths):
    head = commit_project(workdir)
    (workdir / "model.py").write_text("lr = 2\n")
    git("add", "model.py")  # staged or not, a change is uncommitted
    (workdir / "notes.txt").write_text("new\n")

    record = records.start_record(paths, argv=["train.py", "--exp", "demo"])

    assert json.loads(paths.run_record.read_text()) == record
    assert record["git"]["commit"] == head and record["git"]["dirty"] is True
    assert record["git"]["diff_file"] == "code.diff" and record["git"]["branch"]
    diff = paths.code_diff.read_text()
    assert "-lr = 1" in diff and "+lr = 2" in diff and "notes.txt" in diff
    git("reset", "-q", "--hard")
    git("apply", str(paths.code_diff))  # the commit plus the diff is the code that ran
    assert (workdir / "model.py").read_text() == "lr = 2\n"
    assert record["command"].startswith(sys.executable) and record["command"].endswith("train.py --exp demo")
    assert record["argv"] == ["train.py", "--exp", "demo"] and record["cwd"] == os.getcwd()
    assert datetime.fromisoformat(record["started"]).tzinfo is not None
    assert record["resumes"] == [] and record["hardware"]["cpu_count"] == os.cpu_count()


@needs_git
def test_a_clean_checkout_writes_no_diff(workdir, paths):
    head = commit_project(workdir)
    record = records.start_record(paths, argv=[])
    assert record["git"] == {"commit": head, "branch": record["git"]["branch"], "dirty": False, "diff_file": None}
    assert not paths.code_diff.exists()


def test_outside_a_checkout_git_is_null_and_the_record_is_written(paths):
    record = records.start_record(paths, argv=[])
    assert record["git"] is None and not paths.code_diff.exists()
    assert json.loads(paths.run_record.read_text())["git"] is None


def test_without_git_installed_git_is_null(paths, tmp_path, monkeypatch):
    empty = tmp_path / "no_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert records.start_record(paths, argv=[])["git"] is None


def test_finish_record_adds_end_time_wall_seconds_status_and_extras(paths):
    started = records.start_record(paths, argv=[])
    records.note_resume(paths, argv=["train.py", "--resume"])
    done = records.finish_record(paths, status="finished", cv=np.float32(0.5))

    saved = json.loads(paths.run_record.read_text())
    assert saved == done and saved["started"] == started["started"]
    assert datetime.fromisoformat(saved["ended"]) >= datetime.fromisoformat(saved["started"])
    assert 0 <= saved["wall_seconds"] < 60
    assert saved["status"] == "finished" and saved["cv"] == 0.5
    assert [r["argv"] for r in saved["resumes"]] == [["train.py", "--resume"]]
    assert datetime.fromisoformat(saved["resumes"][0]["time"]).tzinfo is not None


def test_packages_hold_every_installed_distribution_as_pip_freeze_would(paths):
    from importlib import metadata

    import pytest as pytest_module
    import torch
    import yaml
    record = records.start_record(paths, argv=[])
    local = lambda v: v.split("+")[0]  # noqa: E731  (2.x.y+cu130: the wheel's local tag)
    assert local(record["packages"]["torch"]) == local(torch.__version__)
    assert record["packages"]["pyyaml"] == yaml.__version__
    assert record["packages"]["pytest"] == pytest_module.__version__  # not one the run imports: all are listed
    installed = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions() if d.metadata["Name"]}
    assert set(record["packages"]) == installed and list(record["packages"]) == sorted(installed)
    assert record["hardware"]["torch"] == torch.__version__
    assert record["hardware"]["cuda_available"] == torch.cuda.is_available()


def test_data_fingerprint_is_the_sha256_of_the_file_bytes(paths, workdir):
    data = workdir / "train.csv"
    data.write_bytes(b"id,target\n1,0\n2,1\n")
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    assert records.file_sha256(data) == expected
    assert records.data_fingerprint([data, workdir / "missing.csv"]) == {str(data): expected}
    assert records.start_record(paths, argv=[], data_files=[data])["data"] == {str(data): expected}


def test_records_are_written_atomically(paths, monkeypatch):
    records.start_record(paths, argv=[])
    before = paths.run_record.read_text()

    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic.os, "replace", killed)  # the run dies between writing and renaming
    with pytest.raises(KeyboardInterrupt):
        records.finish_record(paths, status="finished")
    assert paths.run_record.read_text() == before
    assert [p.name for p in paths.dir.iterdir()] == ["run.json"]  # no temp file left behind
