"""make tune: a hyper-parameter search (Optuna) over a base experiment, each trial a normal k-fold run.

    make tune EXP=base NAME=s1 [TRIALS=30] [ARGS="tune.folds=[0,1] train.epochs=3"]
    python -m <package> tune --exp base --name s1 tune.trials=30
    make tune EXP=base NAME=s1          # again, after a crash or kill -9: the study continues

The space is the tune: section of configs/<study>.tune.yaml (ARGS tune.space=... replaces it; space.py).
Trial k trains configs/<base>.yaml + ARGS + its sampled values on tune.folds (default: all of the base's
folds) into outputs/<study>_t<k>/, an experiment like any other (make predict / submit / ensemble /
leaderboard take it), and is scored by the CV in its cv.json. The median pruner stops a trial after a fold
whose score is worse than the median of the earlier trials at that fold (tune.prune, tune.startup_trials);
with train.eval_every also after any evaluation inside a fold worse than their median at that evaluation.
A pruned trial's folder holds its finished folds and no cv.json.

tune.trials is the size of the study, not of this run: `make tune` runs trials until the study holds that
many complete or pruned ones, so running it again continues an interrupted study and raising TRIALS extends a
finished one. A trial interrupted by a crash, kill -9 or Ctrl-C is marked failed and its values are run
again in the same folder, resumed from its last finished epoch (study.py).

Writes outputs/<study>/: study.db (SQLite, WAL), study.json, best.yaml (the best trial as an experiment
config), summary.md, history.png, importance.png, tune.log (report.py; paths: core/rundir.py StudyPaths).
Every check (space keys and values against the schema, an empty space, a study folder from another base or
folds) runs before the first trial. tune.n_jobs > 1: that many processes on one machine, one per GPU.
"""
from __future__ import annotations

import os

from optuna import TrialPruned

from ..core.cli import run_stage
from ..core.config import load
from ..core.errors import ConfigError
from ..core.lock import hold
from ..core.rundir import RunPaths, get_logger, read_cv
from ..training.kfold import train_kfold
from .report import write_summary
from .setup import EVAL_STEP, Setup, open_study_folder, prepare
from .study import enqueue_base, open_storage, open_study, owner, recover, start_workers, stop_workers, work


def resumable(paths: RunPaths) -> bool:
    """A retried trial's folder that training can continue (it got as far as writing its config)."""
    return paths.config.is_file() and not paths.cv.is_file()


def fresh_accelerate_state() -> None:
    # one process runs many trials; Accelerate keeps one state per process (a trial may change accum_steps)
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def objective(setup: Setup, log):
    def run_trial(trial) -> float:
        params = {p.key: p.suggest(trial) for p in setup.space}
        exp = trial.user_attrs.get("run") or setup.paths.trial_exp(trial.number)
        trial.set_user_attr("run", exp)
        trial.set_user_attr("owner", owner())
        cfg = load(setup.base, setup.trial_overrides(params))
        cfg.exp, cfg.overwrite = exp, True  # the folder is this study's trial's: a retry replaces what it left
        paths = RunPaths(cfg)
        resume = "retry_of" in trial.user_attrs and resumable(paths)
        log.info(f"trial {trial.number} -> outputs/{exp}{' (resumed)' if resume else ''}: {params}")

        def on_fold(k: int, score: float) -> None:
            step = setup.folds.index(k)
            trial.report(score, step)
            if step < len(setup.folds) - 1 and trial.should_prune():
                raise TrialPruned(f"pruned after fold {k}: {cfg.metric} {score:.5f} is worse than the median of the "
                                  f"earlier trials at that fold")

        def on_eval(k: int, n: int, score: float) -> None:
            trial.report(score, EVAL_STEP * (setup.folds.index(k) + 1) + n)
            if trial.should_prune():
                raise TrialPruned(f"pruned at evaluation {n} of fold {k}: {cfg.metric} {score:.5f} is worse than the "
                                  f"median of the earlier trials there")
        # per evaluation only with train.eval_every (epoch evaluations would compare too early) and one model per fold
        per_eval = {"on_eval": on_eval} if cfg.train.eval_every > 0 and not cfg.train.seeds and setup.tune.prune else {}

        fresh_accelerate_state()
        try:
            with hold(paths.dir, "tune"):
                try:
                    train_kfold(cfg, resume=resume, on_fold=on_fold, **per_eval)
                except ConfigError as e:
                    if not resume:
                        raise
                    log.warning(f"trial {trial.number}: outputs/{exp} cannot be resumed ({e}); training it afresh")
                    fresh_accelerate_state()
                    train_kfold(cfg, on_fold=on_fold, **per_eval)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # Ctrl-C: the next make tune runs these values again
            raise
        finally:
            get_logger(setup.paths.log)  # training pointed the log at the trial's train.log
        cv = read_cv(paths)
        trial.set_user_attr("folds", cv["folds"])
        log.info(f"trial {trial.number}: CV {cv['metric']} {cv['cv']:.5f}  folds {[round(s, 5) for s in cv['folds']]}")
        return cv["cv"]
    return run_trial


def run(exp: str | None, overrides: list[str], name: str | None = None, worker: str | None = None) -> dict:
    setup = prepare(exp, name, overrides)
    if worker is not None:
        log = get_logger(None)
        study = open_study(setup, open_storage(setup.paths.db), int(worker))
        work(study, setup, objective(setup, log), log, parent=os.getppid())
        return {}
    with hold(setup.paths.dir, "tune"):
        new = open_study_folder(setup, setup.cfg.overwrite)
        log = get_logger(setup.paths.log)
        storage = open_storage(setup.paths.db)
        study = open_study(setup, storage)
        recover(study, storage, log)
        if new and setup.tune.include_base:
            enqueue_base(study, setup, log)
        log.info(f"study {setup.paths.name} on {setup.base}: {len(study.trials)} trials so far, target "
                 f"{setup.tune.trials} finished; {setup.direction} {setup.cfg.metric} on folds {setup.folds}")
        procs = start_workers(setup, [o for o in overrides if not o.startswith("overwrite=")], log)
        try:
            work(study, setup, objective(setup, log), log, after=lambda: write_summary(setup, study, plots=False))
        except BaseException:
            stop_workers(procs, log, kill=True)
            write_summary(setup, study, plots=False)
            raise
        stop_workers(procs, log, kill=False)
        result = write_summary(setup, study)
    log.info(f"study {setup.paths.name}: best trial {result['best_trial']} CV {result['best_value']} "
             f"({result['best_run']}); {setup.paths.summary}, {setup.paths.best}")
    return result


def main(argv=None):
    run_stage(run, argv, options=("--name", "--worker"))
