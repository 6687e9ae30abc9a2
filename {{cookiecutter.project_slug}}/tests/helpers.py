"""Shared test helpers: the package under test (found, not templated) and stage runners."""
from __future__ import annotations

import importlib
import sys
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
