"""Checkpoint writes off the training thread: the state is copied (snapshot) and torch.save runs in one
background thread while the next epoch trains.

Used by checkpoints.py for best.pt and the resume points (fold<k>/last.pt). torch.save releases the GIL
while it writes, so on a 2-core CPU the write of a resnet18's model + AdamW state (about 0.15 s per
file here) overlaps the next batches instead of adding to the epoch; on a GPU the copy to host memory is
what torch.save would have done anyway.

The guarantees stay those of a synchronous save:
- a file appears whole or not at all (atomic_path: temp file + os.replace), in the order it was queued;
- one group of files is in flight at a time: queueing the next waits for the previous, so a kill -9
  loses at most the newest resume point (the one before it is on disk, complete);
- a failed write (a full disk) is raised in the training thread at the next save or at flush();
- flush() runs before anything that vouches for the files (each fold's done.json) and when training fails,
  so a finished fold's best.pt is on disk before its marker says so.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic import write_with


def snapshot(obj: Any) -> Any:
    """A copy that later training steps cannot change: tensors cloned to the CPU, containers and arrays
    copied; other leaves (numbers, strings, RNG tuples of immutable items) shared."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj


def write(path: Path, obj: Any) -> None:
    """torch.save through a temp file beside `path`, swapped in whole."""
    write_with(path, lambda tmp: torch.save(obj, tmp))


class Saver:
    """One writer thread and at most one group of files in flight (see the module docstring)."""

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def save(self, *files: tuple[Path, Any]) -> None:
        """Queue (path, object) pairs, written in this order; each object must already be a snapshot."""
        self.flush()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        self._pending = self._pool.submit(_write_all, files)

    def flush(self) -> None:
        """Wait for the files in flight; a write that failed raises here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def _write_all(files: tuple[tuple[Path, Any], ...]) -> None:
    for path, obj in files:
        write(path, obj)


SAVER = Saver()  # the process's writer: k-fold training's best.pt and last.pt (make train, make pseudo, make tune)
