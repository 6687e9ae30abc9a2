"""Fixtures: the project's real configs in a scratch working directory, and the demo competition.

Tests compose the real configs/default.yaml + configs/demo.yaml and shrink them with overrides.
"""
from __future__ import annotations

import os
import shutil

import pytest

from helpers import PROJECT, mod, reset_accelerate

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests build their models locally; never wait on a network


def _problem() -> str:
    return mod("core.config").load(config_dir=PROJECT / "configs").problem


PROBLEM = _problem()
# A multilabel demo needs several target columns; the others use the baked default.
TARGET_OVERRIDE = ["data.target_cols=[t0,t1,t2]"] if PROBLEM == "multilabel" else []


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each CLI run is its own process in real use; in-process tests reset Accelerate's singletons."""
    yield
    reset_accelerate()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    out = root / "data"
    cfg = mod("core.config").load("demo", [f"data.dir={out}", *TARGET_OVERRIDE], config_dir=PROJECT / "configs")
    mod(f"demo.{cfg.task}").write_demo(cfg, rows=600)
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch project root holding a copy of configs/; outputs land here."""
    shutil.copytree(PROJECT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny(demo_dir, workdir):
    """Overrides that make the demo experiment tiny, pointed at the session's demo data."""
    task = mod("core.config").load("demo").task
    # report.auto=false: the page costs about a second per training; tests/test_report.py covers it
    args = [f"data.dir={demo_dir}", *TARGET_OVERRIDE, "train.progress=false", "report.auto=false"]
    if task == "text":
        args.append(f"model.name={demo_dir / 'tiny_bert'}")
    return args


@pytest.fixture
def data_copy(demo_dir, tmp_path):
    """A writable copy of the demo competition, for tests that break it."""
    dst = tmp_path / "data_copy"
    shutil.copytree(demo_dir, dst)
    return dst
