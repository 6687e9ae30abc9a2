"""Shared command-line handling: `--exp NAME` (or EXP in the environment) plus key=value overrides.

Every stage module is run the same way:
    python -m <package>.<stage> --exp exp001 train.epochs=3 model.name=resnet34

Nothing reaches the user as a traceback (run_stage): a config or data mistake, a name a folder cannot hold
(EXP, NAME, EXPS, BASE, empty ones included), a fault of the machine (a full disk, a read-only or missing
folder), a Ctrl-C, or an unexpected exception each end in one line; the last one names the log file that
holds its traceback.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from .errors import ConfigError, DataError, TrainingError
from .rundir import check_run_name, outputs_root

NAMED = {"exp": "EXP", "name": "NAME", "exps": "EXPS", "base": "BASE"}  # flags that name a folder


def parse_cli(argv: list[str]) -> tuple[str | None, list[str]]:
    exp = os.environ.get("EXP") or None
    overrides: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--exp":
            exp = next(it, "")
            if exp.startswith("-") or "=" in exp:  # `make X EXP=`: the next argument is not a name
                overrides.append(exp)
                exp = ""
            exp = exp or _empty("EXP")
        elif arg.startswith("--exp="):
            exp = arg.split("=", 1)[1] or _empty("EXP")
        elif arg in ("-h", "--help"):
            print(sys.modules["__main__"].__doc__ or "")
            raise SystemExit(0)
        else:
            overrides.append(arg)
    return exp or None, overrides


def _empty(var: str) -> str:
    raise ConfigError(f"{var} is empty; give it a name: {var}=<name> (letters, digits, '.', '_' or '-')")


def check_names(exp: str | None, flags: dict) -> None:
    """EXP, NAME, EXPS and BASE name folders: each must be one a folder can hold, and not another stage's."""
    if exp is not None:
        check_run_name(exp, "EXP")
    for key, var in NAMED.items():
        value = flags.get(key)
        if value is None or key == "exp":
            continue
        names = value.replace(",", " ").split() if key == "exps" else ([value] if value else [])
        if not names or any(n.startswith("-") or "=" in n for n in names):
            _empty(var)
        for n in names:
            check_run_name(n, var)


def pop_flag(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """`--flag VALUE` or `--flag=VALUE` taken out of argv (for stages with more than --exp)."""
    value, rest, it = None, [], iter(argv)
    for arg in it:
        if arg == flag:
            value = next(it, "")  # present but empty (`make ensemble NAME=` at the end): "", not absent
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
    stage = fn.__module__.rsplit(".", 1)[-1] if fn.__module__ != "__main__" else "stage"
    exp, overrides = None, []
    try:
        flags: dict = {}
        for flag in options:
            flags[flag.lstrip("-")], argv = pop_flag(argv, flag)
        for flag in switches:
            flags[flag.lstrip("-")], argv = pop_switch(argv, flag)
        exp, overrides = parse_cli(argv)
        check_names(exp, flags)
        fn(exp, overrides, **flags)
    except (ConfigError, DataError, TrainingError) as e:
        logging.getLogger(__name__).debug("stage failed", exc_info=True)
        fail(f"error: {e}", 2)
    except KeyboardInterrupt:
        fail(f"error: interrupted (Ctrl-C); {_again(stage, exp, overrides)}", 130)
    except OSError as e:
        if e.errno not in MACHINE_FAULTS:
            raise_unexpected(e, stage, overrides)
        fail(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}; "
             f"{MACHINE_FAULTS[e.errno]}; {_again(stage, exp, overrides)}", 2)
    except Exception as e:  # noqa: BLE001 - the last net: one line, the traceback in a file
        raise_unexpected(e, stage, overrides)


MACHINE_FAULTS = {
    errno.ENOSPC: "the disk is full: free space (or set paths.outputs to another disk)",
    errno.EDQUOT: "the disk quota is exhausted: free space (or set paths.outputs to another disk)",
    errno.EROFS: "that file system is read-only: set paths.outputs (or data.dir) to a writable folder",
    errno.EACCES: "no permission: fix the folder's permissions or set paths.outputs to a writable folder",
    errno.EPERM: "not permitted: fix the folder's permissions or set paths.outputs to a writable folder",
    errno.ENOENT: "it does not exist (was a folder removed while the stage ran?)",
}


def _again(stage: str, exp: str | None, overrides: list[str]) -> str:
    """What to run next: a training run that has started continues where it stopped (its finished folds and
    last epoch are kept); anything else wrote whole files only (atomic writes), so it is simply run again."""
    try:
        started = bool(exp) and (outputs_root(overrides) / exp / "config.yaml").is_file()
    except Exception:  # noqa: BLE001 - only a hint: a broken config must not hide the real error
        started = False
    if stage in ("train", "pretrain") and started:
        return f"the run folder keeps its finished folds and last epoch: continue with make {stage} EXP={exp} RESUME=1"
    return "nothing half-written was left; run it again"


def fail(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(code) from None


def raise_unexpected(e: BaseException, stage: str, overrides: list[str]) -> None:
    """An exception nobody foresaw: the traceback into outputs/errors/<time>-<stage>.log, one line on screen."""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{stage}-{os.getpid()}.log"
    for folder in (outputs_root(overrides) / "errors", Path(os.environ.get("TMPDIR", "/tmp"))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            break
        except OSError:
            continue
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    fail(f"error: unexpected {type(e).__name__}{': ' + first[:300] if first else ''} in make {stage}; the traceback "
         f"is in {folder / name} (please report it with that file)", 1)
