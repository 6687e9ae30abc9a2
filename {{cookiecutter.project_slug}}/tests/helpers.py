"""Shared test helpers: the package under test (found, not templated) and stage runners."""
from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
PKG_NAME = next(p.parent.name for p in (PROJECT / "src").glob("*/__init__.py"))


def mod(name: str):
    return importlib.import_module(f"{PKG_NAME}.{name}")


def run_cli(stage: str, *argv: str) -> int:
    """Run a stage's command-line entry point in-process; returns the exit code."""
    try:
        mod(stage).main(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def like_demo(*exps: str) -> None:
    """Make configs/<exp>.yaml copies of configs/demo.yaml in the working directory (tests use many names)."""
    demo = Path("configs/demo.yaml").read_text()
    for exp in exps:
        Path(f"configs/{exp}.yaml").write_text(demo)


def reset_accelerate() -> None:
    """Each CLI run is its own process in real use; in-process runs reset Accelerate's singletons."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@contextmanager
def inside(path: Path):
    """Run in-process stages from `path` (module-scoped runs cannot use the monkeypatch fixture)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
        reset_accelerate()
