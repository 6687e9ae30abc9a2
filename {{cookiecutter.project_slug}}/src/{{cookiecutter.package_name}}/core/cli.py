"""Shared command-line handling: `--exp NAME` (or EXP in the environment) plus key=value overrides.

Every stage module is run the same way:
    python -m <package>.<stage> --exp exp001 train.epochs=3 model.name=resnet34
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from .errors import ConfigError, DataError, TrainingError


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


def pop_switch(argv: list[str], flag: str) -> tuple[bool, list[str]]:
    """A bare `--flag` (e.g. --resume) taken out of argv: a flag, not a config key, so a saved config
    never says how the run was started."""
    return flag in argv, [a for a in argv if a != flag]


def run_stage(fn: Callable[..., object], argv: list[str] | None = None, *, options: tuple[str, ...] = (),
              switches: tuple[str, ...] = ()) -> None:
    """Run a stage as fn(exp, overrides, **flags); a config or data mistake ends with one clear line and exit
    code 2. options: flags with a value (`--name NEW` -> name="NEW", None when absent), taken out in the
    order given; switches: bare flags (`--resume` -> resume=True)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags: dict = {}
    for flag in options:
        flags[flag.lstrip("-")], argv = pop_flag(argv, flag)
    for flag in switches:
        flags[flag.lstrip("-")], argv = pop_switch(argv, flag)
    exp, overrides = parse_cli(argv)
    try:
        fn(exp, overrides, **flags)
    except (ConfigError, DataError, TrainingError) as e:
        logging.getLogger(__name__).debug("stage failed", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
