"""The run record: what it takes to know, months later, how outputs/<exp>/ was made.

Beside config.yaml every run writes outputs/<exp>/run.json: the exact command line, the working folder,
start and end times, the git commit and branch of the project, the installed version of every
distribution, the hardware, and the sha256 of the competition CSVs (a resumed run checks them).
When the project has uncommitted changes, outputs/<exp>/code.diff holds them (`git diff HEAD` of the
project folder, after the names of untracked files), so `git checkout <commit> && git apply code.diff`
gives back the code that ran. Without git, or outside a checkout, "git" is null and the run goes on.

    start_record(paths, data_files=[...])   # once, when the run folder is fresh (main process)
    note_resume(paths, argv=sys.argv)       # each RESUME=1 appends to "resumes"
    finish_record(paths, status="finished", cv=0.91)
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

from .atomic import write_text
from .rundir import RunPaths

GIT_TIMEOUT_S = 10


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _write(path: Path, record: dict) -> None:
    # numpy / torch scalars (a CV score) are stored as numbers, anything else unknown as its str()
    default = lambda o: o.item() if hasattr(o, "item") else str(o)  # noqa: E731
    write_text(path, json.dumps(record, indent=2, default=default) + "\n")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_list(root: Path, skip: tuple[str, ...] = ("MANIFEST.json",)) -> list[dict]:
    """Every file under root (but those named in skip) with its size and sha256, in path order: a bundle's
    MANIFEST.json, and what make package-test compares it with."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name not in skip)
    return [{"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for p in files]


def data_fingerprint(files: list[Path]) -> dict[str, str]:
    """{str(path): sha256} of the competition files that exist (images folders are not hashed)."""
    return {str(f): file_sha256(Path(f)) for f in files if Path(f).is_file()}


def package_versions() -> dict[str, str]:
    """Every installed distribution and its version, as `pip freeze` lists them (sorted, lower-case names)."""
    out = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name:
            out.setdefault(name.lower().replace("_", "-"), dist.version)
    return dict(sorted(out.items()))


def hardware() -> dict:
    hw: dict = {"cpu_count": os.cpu_count()}
    try:
        hw["ram_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or the name is unknown
        pass
    try:
        import torch
    except ImportError:
        return hw
    hw["torch"] = torch.__version__
    hw["cuda_available"] = torch.cuda.is_available()
    if hw["cuda_available"]:
        hw["cuda"] = torch.version.cuda
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        hw["gpus"] = [{"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1)} for p in props]
    return hw


def _git(*args: str) -> str | None:
    """stdout of `git args` in the working folder, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state() -> tuple[dict | None, str]:
    """({commit, branch, dirty}, diff text) of the project folder; (None, "") outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:  # not a repository, no commit yet, or no git
        return None, ""
    branch = (_git("rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    diff = _git("diff", "--no-ext-diff", "HEAD", "--", ".") or ""
    status = _git("status", "--porcelain", "--", ".") or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("?? ")]
    if untracked:
        # first, where `git apply` skips text that is not a patch
        diff = "# untracked files (not in the diff below):\n" + "".join(f"#   {p}\n" for p in untracked) + diff
    return {"commit": commit.strip(), "branch": branch, "dirty": bool(diff)}, diff


def start_record(paths: RunPaths, argv: list[str] | None = None, data_files: list[Path] = (), **extra) -> dict:
    """Writes paths.run_record (run.json) and, when the project is a git checkout with uncommitted changes,
    paths.code_diff. extra: more top-level entries (the training processes). Returns the record dict."""
    # sys.orig_argv keeps `-m <package>`, which sys.argv turns into the path of __main__.py
    command = [sys.executable, *(sys.orig_argv[1:] if argv is None else argv)]
    argv = list(sys.argv if argv is None else argv)
    git, diff = git_state()
    if git is not None:
        git["diff_file"] = paths.code_diff.name if diff else None
    if diff:
        write_text(paths.code_diff, diff)
    elif paths.code_diff.exists():  # a stale diff from an earlier run of this folder
        paths.code_diff.unlink()
    record = {
        "command": shlex.join(command),
        "argv": argv,
        "cwd": os.getcwd(),
        "started": _now(),
        "host": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "packages": package_versions(),
        "git": git,
        "data": data_fingerprint(list(data_files)),
        "resumes": [],
        **extra,
    }
    _write(paths.run_record, record)
    return record


def _read(paths: RunPaths) -> dict:
    return json.loads(paths.run_record.read_text()) if paths.run_record.is_file() else {}


def note_resume(paths: RunPaths, **info) -> dict:
    """Appends {time, **info} to run.json's "resumes" (a RESUME=1 run keeps the first start time)."""
    record = _read(paths)
    record.setdefault("resumes", []).append({"time": _now(), **info})
    _write(paths.run_record, record)
    return record


def finish_record(paths: RunPaths, status: str = "finished", **extra) -> dict:
    """Re-reads run.json, adds end time (ISO, local tz), wall_seconds (end - start, crashes and pauses
    between resumes included), status and extra keys, rewrites it atomically."""
    record = _read(paths)
    end = datetime.now().astimezone()
    record["ended"] = end.isoformat(timespec="milliseconds")
    if "started" in record:
        record["wall_seconds"] = round((end - datetime.fromisoformat(record["started"])).total_seconds(), 3)
    record.update(status=status, **extra)
    _write(paths.run_record, record)
    return record
