"""make config: print the resolved config of an experiment (what make train would run with).

    make config EXP=exp001 ARGS="train.lr=3e-4"      # python -m <package> config --exp exp001

Every key, its type and default: core/schema.py and configs/default.yaml; loading and overrides:
core/config.py.
"""
from __future__ import annotations

import sys

from .core.cli import run_stage
from .core.config import dump, load


def run(exp: str | None, overrides: list[str]) -> None:
    sys.stdout.write(dump(load(exp, overrides)))


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
