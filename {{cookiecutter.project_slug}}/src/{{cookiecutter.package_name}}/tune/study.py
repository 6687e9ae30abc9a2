"""The Optuna study behind make tune: its SQLite storage, sampler and pruner, interrupted trials, the trial
loop, and the parallel processes of tune.n_jobs.

Storage: outputs/<study>/study.db, a real SQLite file in WAL mode (readers do not block the writer, so
n_jobs processes share it), opened with load_if_exists: `make tune` again continues the study. The
sampler's seed is tune.seed + the trials the study holds, so a continued study does not draw its first
run's random trials again.

Interrupted trials: each trial records its process (pid, host). A crash, a kill -9 or a Ctrl-C leaves it
RUNNING (or FAIL, marked interrupted): the next `make tune`, holding the study's lock, marks it FAIL and
enqueues its parameters again with the same run folder, which the new trial resumes (finished folds are
kept) or, when nothing resumable was written, overwrites. A trial whose process still runs (an orphaned
worker finishing its trial) is left alone.

tune.n_jobs = n: n - 1 more processes (python -m <package> tune ... --worker i) run trials against the
same study.db; on a machine with n GPUs process i sees only GPU i (CUDA_VISIBLE_DEVICES). One machine:
liveness is checked by pid. A worker stops when its parent is gone.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from ..core.config import flatten, to_dict
from ..core.errors import TrainingError
from .setup import Setup

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_FAILS = 3  # trials in a row that fail (a NaN loss): the space is likely wrong, stop


def open_storage(db: Path) -> optuna.storages.RDBStorage:
    db.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the database file: set once, every later connection uses it
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("PRAGMA journal_mode=WAL")
    return optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def open_study(setup: Setup, storage, worker: int = 0) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = setup.tune
    held = 0
    with contextlib.suppress(KeyError):
        held = len(optuna.load_study(study_name=setup.paths.name, storage=storage).get_trials(deepcopy=False))
    seed = t.seed + held + 1000 * worker
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials) if t.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials) if t.prune
              else optuna.pruners.NopPruner())
    return optuna.create_study(storage=storage, study_name=setup.paths.name, direction=setup.direction,
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def owner() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def alive(who: dict | None) -> bool:
    if not who:
        return False  # never claimed by make tune (e.g. study.ask() elsewhere): nobody will finish it
    if who.get("host") != socket.gethostname():
        return True  # cannot tell
    try:
        os.kill(int(who["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError, KeyError, TypeError):
        return True
    return True


def recover(study: optuna.Study, storage, log) -> list[int]:
    """Interrupted trials -> FAIL, their parameters enqueued again (same run folder); their numbers."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    study_id = storage.get_study_id_from_name(study.study_name)
    out = []
    for t in trials:
        stale = t.state == TrialState.RUNNING and not alive(t.user_attrs.get("owner"))
        if stale:
            tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_state_values(tid, TrialState.FAIL)
        if (stale or (t.state == TrialState.FAIL and t.user_attrs.get("interrupted"))) and t.number not in retried:
            attrs = {"retry_of": t.number, **({"run": t.user_attrs["run"]} if "run" in t.user_attrs else {}),
                     **({"base": True} if t.user_attrs.get("base") else {})}
            study.enqueue_trial(dict(t.params), user_attrs=attrs)
            log.info(f"trial {t.number} was interrupted ({t.user_attrs.get('run', 'no run folder yet')}): marked "
                     f"failed, its parameters run again")
            out.append(t.number)
    return out


def enqueue_base(study: optuna.Study, setup: Setup, log) -> None:
    """The new study's first trial: the base's own values of the searched keys (a value outside the space's
    range is still run, with Optuna's warning), the reference the other trials are read against."""
    flat = {}
    values = flatten(to_dict(setup.cfg))
    for p in setup.space:
        if p.kind != "choice" or p.contains(values[p.key]):
            flat[p.key] = values[p.key]
    study.enqueue_trial(flat, user_attrs={"base": True})
    log.info(f"trial 0 runs the base's values: {flat}")


def counts(study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    return {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}


def work(study: optuna.Study, setup: Setup, objective: Callable, log, parent: int | None = None,
         after: Callable[[], None] | None = None) -> int:
    """Trials until the study holds tune.trials finished (complete + pruned) plus running ones; the number this
    process ran. parent: a worker's parent pid (it stops when that process is gone); after: called after each."""
    ran, fails = 0, 0
    while parent is None or os.getppid() == parent:
        c = counts(study)
        if c["complete"] + c["pruned"] + c["running"] >= setup.tune.trials:
            break
        mine: list[int] = []
        study.optimize(lambda trial: (mine.append(trial.number), objective(trial))[1], n_trials=1,
                       catch=(TrainingError,))
        ran += 1
        state = study.get_trials(deepcopy=False)[mine[0]].state if mine else TrialState.FAIL
        fails = fails + 1 if state == TrialState.FAIL else 0
        if after is not None:
            after()
        if fails >= MAX_FAILS:
            raise TrainingError(f"{MAX_FAILS} trials in a row failed (see {setup.paths.log}); narrow tune.space "
                                f"(e.g. a lower train.lr high) and run make tune again")
    return ran


def start_workers(setup: Setup, argv: list[str], log) -> list[subprocess.Popen]:
    """tune.n_jobs - 1 processes of this stage on the same study; on n GPUs, process i gets GPU i."""
    n = setup.tune.n_jobs
    if n <= 1:
        return []
    import torch
    gpus = torch.cuda.device_count()
    package = __package__.rsplit(".", 1)[0]
    src = str(Path(__file__).resolve().parents[2])
    procs = []
    for i in range(1, n):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
        if gpus >= n:
            env["CUDA_VISIBLE_DEVICES"] = str(i)
        cmd = [sys.executable, "-m", package, "tune", "--exp", setup.base, "--name", setup.paths.name,
               "--worker", str(i), *argv]
        procs.append(subprocess.Popen(cmd, env=env))
    log.info(f"{n - 1} more processes on {setup.paths.db}" + (f", one GPU each" if gpus >= n else
                                                                f" ({gpus} GPUs visible: they share the devices)"))
    return procs


def stop_workers(procs: list[subprocess.Popen], log, kill: bool) -> None:
    for p in procs:
        if kill and p.poll() is None:
            p.terminate()
    for p in procs:
        code = p.wait()
        if code and not kill:
            log.warning(f"a tune worker (pid {p.pid}) ended with exit code {code}")
