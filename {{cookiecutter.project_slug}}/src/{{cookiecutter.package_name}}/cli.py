"""Shared command-line handling: `--exp NAME` (or EXP in the environment) plus key=value overrides.

Every stage module is run the same way:
    python -m <package>.<stage> --exp exp001 train.epochs=3 model.name=resnet34
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from .config import ConfigError


class DataError(ValueError):
    """The competition files are not what the config says; the message says what to fix."""


class TrainingError(RuntimeError):
    """Training went wrong in a way the config can fix (a NaN loss); the message names fold, epoch, step."""


def parse_cli(argv: list[str]) -> tuple[str | None, list[str]]:
    exp = os.environ.get("EXP") or None
    overrides: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--exp":
            exp = next(it, None)
        elif arg.startswith("--exp="):
            exp = arg.split("=", 1)[1]
        elif arg in ("-h", "--help"):
            print(sys.modules["__main__"].__doc__ or "")
            raise SystemExit(0)
        else:
            overrides.append(arg)
    return exp or None, overrides


def pop_flag(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """`--flag VALUE` or `--flag=VALUE` taken out of argv (for stages with more than --exp)."""
    value, rest, it = None, [], iter(argv)
    for arg in it:
        if arg == flag:
            value = next(it, None)
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


def run_stage(fn: Callable[[str | None, list[str]], object], argv: list[str] | None = None) -> None:
    """Run a stage; a config or data mistake ends with one clear line and exit code 2."""
    exp, overrides = parse_cli(sys.argv[1:] if argv is None else argv)
    try:
        fn(exp, overrides)
    except (ConfigError, DataError, TrainingError) as e:
        logging.getLogger(__name__).debug("stage failed", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
