"""One writer per experiment: outputs/.<exp>.lock (packages/.<bundle>.lock) while a stage writes the folder.

    with hold(paths.dir, "train"):      # make train / predict / pseudo / ensemble / package / pretrain
        ...

The lock file sits beside the folder (overwrite=true deletes the folder itself) and holds the holder's pid,
host, stage and start time. A second writer is refused while the holder lives, with or without
overwrite=true; a lock whose process is gone (same host, no such pid: a kill -9, a crash, a reboot) is stale
and taken over with a note. A stage that runs another in-process (a full fit predicting) keeps the
lock it holds. On another host liveness cannot be checked: the message says which file to
remove once that run is known to be over. Under torchrun only rank 0 holds it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ConfigError


def lock_file(folder: Path) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell: assume it runs
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def hold(folder: Path, stage: str) -> Iterator[None]:
    if os.environ.get("RANK", "0") != "0":  # torchrun's other ranks: rank 0 holds the lock for the run
        yield
        return
    path = lock_file(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage,
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                yield  # this process holds it already (a full fit or a pseudo round predicting its own run)
                return
            if holder and _alive(holder):
                raise ConfigError(
                    f"{folder} is being written by make {holder.get('stage', '?')} (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('since')}); wait for it to finish or stop it. If that "
                    f"process is gone, remove {path}") from None
            if not holder and time.time() - path.stat().st_mtime < 5:
                time.sleep(0.5)  # being written by a writer that just took it
                continue
            print(f"note: took over the stale lock {path} of make {holder.get('stage')} (pid {holder.get('pid')}, "
                  f"no longer running)", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise ConfigError(f"{path} could not be taken; remove it if no stage is writing {folder}")
    try:
        yield
    finally:
        if _read(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
