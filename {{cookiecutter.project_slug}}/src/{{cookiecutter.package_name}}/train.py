"""make train: k-fold training of an experiment, or its full fit.

    make train EXP=exp001 ARGS="train.epochs=3 model.name=resnet34"   # python -m <package> train --exp exp001
    make train EXP=exp001 RESUME=1          # after a crash: finished folds skipped, the interrupted one continued
    make train EXP=exp001 NPROC=2           # DDP: python -m torch.distributed.run ... -m <package>.train
    make train EXP=exp001 ARGS="train.full_fit=true train.seeds=[1,2,3]"   # all rows -> outputs/exp001_full/

K-fold: training/kfold.py (outputs/<exp>/: checkpoints, OOF, cv.json, loss curves per fold). Full fit:
training/fullfit.py, then the test predictions of inference/predictor.py, as make predict makes them.
At the end, outputs/<exp>/report.html (reporting/, report.auto=true; make report EXP=<exp> by hand).
"""
from __future__ import annotations

from pathlib import Path

from .core.cli import run_stage
from .core.config import load
from .core.errors import ConfigError
from .core.lock import hold
from .core.rundir import RunPaths
from .inference.predictor import predict_test
from .reporting import refresh
from .training.fullfit import run_full_fit
from .training.kfold import train_kfold


def run(exp: str | None, overrides: list[str], resume: bool = False) -> dict:
    cfg = load(exp, overrides)
    folder = Path(cfg.paths.outputs) / (f"{cfg.exp}_full" if cfg.train.full_fit else cfg.exp)
    with hold(folder, "train"):  # one writer per experiment, overwrite=true or not
        if not cfg.train.full_fit:
            result = train_kfold(cfg, resume=resume)
            refresh(RunPaths(cfg), cfg)
            return result
        if resume:
            raise ConfigError("RESUME=1 applies to k-fold runs; rerun the full fit (train.full_fit=true) instead")
        result = run_full_fit(cfg)
        predict_test(cfg.exp, [])  # every process: predict shards the test rows under DDP too
        refresh(RunPaths(cfg, folder.name), cfg)
        return result


def main(argv=None):
    run_stage(run, argv, switches=("--resume",))


if __name__ == "__main__":
    main()
