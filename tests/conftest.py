"""Fixtures for the template's tests: bake projects into a session scratch folder."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("image", "text")
PROBLEMS = ("binary", "multiclass", "multilabel", "regression")
COMBOS = list(itertools.product(TASKS, PROBLEMS))


def bake_into(out: Path, **answers) -> Path:
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(out), extra_context=answers))


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def make(target: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["make", target, f"PYTHON={sys.executable}", *args], cwd)


@pytest.fixture(scope="session")
def baked(tmp_path_factory):
    """One baked project per task x problem, made once per session."""
    out = tmp_path_factory.mktemp("baked")
    return {(t, p): bake_into(out, task=t, problem=p, project_slug=f"{t}_{p}") for t, p in COMBOS}
