"""Optional experiment trackers, chosen by config; none is required and none is installed by default.

The files in outputs/<exp>/ are the record of a run; a tracker adds a browsable view across runs.

    pip install mlflow
    make train ARGS="track.backends=[mlflow]"
    MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri outputs/tracking/mlflow   # the variable: newer MLflow

    pip install tensorboard   ->  track.backends=[tensorboard];  tensorboard --logdir outputs/tracking/tensorboard
    pip install wandb         ->  track.backends=[wandb]; offline unless WANDB_API_KEY or WANDB_MODE says otherwise
                                  (offline runs: wandb sync outputs/tracking/wandb/offline-run-*)

Each run logs the flattened config as parameters and, per epoch, fold<k>/train_loss, valid_loss, score
and lr, then the CV. Each backend has its folder under track.dir (default outputs/tracking): mlflow/ is a
local file store unless MLFLOW_TRACKING_URI points elsewhere (experiment = track.project or the project
folder's name; one folder per backend, or MLflow would take the others for broken experiments).
Only the main process logs. A missing package fails before any work, naming the pip line.
"""
from __future__ import annotations

import importlib
import math
import numbers
import os
from pathlib import Path

import yaml

from ..core.config import flatten
from ..core.errors import ConfigError
from ..core.rundir import tracking_dir
from ..core.schema import Config

MODULES = {"mlflow": "mlflow", "tensorboard": "torch.utils.tensorboard", "wandb": "wandb"}
MLFLOW_PARAM_CHARS = 500  # MLflow's limit on a parameter value in its older stores


def check_trackers(cfg: Config) -> None:
    """Before any work: each backend's package importable, else ConfigError naming 'track.backends' and
    the pip install line (mlflow / tensorboard / wandb)."""
    for name in cfg.track.backends:
        try:
            importlib.import_module(MODULES[name])
        except ImportError:
            raise ConfigError(f"config key 'track.backends' has {name}, which is not installed: "
                              f"pip install {name}  (or drop it from track.backends)") from None


def _root(cfg: Config) -> Path:
    return tracking_dir(cfg).resolve()  # absolute: a tracker may change folders or hand it to a subprocess


def _project(cfg: Config) -> str:
    return cfg.track.project or Path.cwd().name


def _numbers(metrics: dict) -> dict[str, float]:
    """The finite numbers only: an epoch named "swa", a NaN loss or a missing value is not logged."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, numbers.Real) and math.isfinite(value):
            out[key] = float(value)
    return out


class _MLflow:
    def __init__(self, cfg: Config, run_name: str):
        import mlflow
        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # newer MLflow (3.x) refuses a file store, now in maintenance mode, unless this is set
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((_root(cfg) / "mlflow").as_uri())
        mlflow.set_experiment(_project(cfg))
        mlflow.start_run(run_name=run_name)

    def log_params(self, params: dict) -> None:
        self.mlflow.log_params({k: str(v)[:MLFLOW_PARAM_CHARS] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self, status: str) -> None:
        self.mlflow.end_run(status=status)


class _TensorBoard:
    def __init__(self, cfg: Config, run_name: str):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(_root(cfg) / "tensorboard" / run_name))

    def log_params(self, params: dict) -> None:
        text = yaml.safe_dump({k: v if isinstance(v, (int, float, bool, str)) else str(v)
                               for k, v in params.items()}, sort_keys=False)
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))  # markdown code

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def close(self, status: str) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, cfg: Config, run_name: str):
        import wandb
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        root = _root(cfg)
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=_project(cfg), name=run_name, dir=str(root), mode=mode)

    def log_params(self, params: dict) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        # W&B drops a step lower than the last one, and each fold restarts at epoch 1: the epoch is
        # logged as a value (choose it as the x axis) and W&B counts its own steps.
        self.run.log({**metrics, "epoch": step})

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


BACKENDS = {"mlflow": _MLflow, "tensorboard": _TensorBoard, "wandb": _Wandb}


class Trackers:
    """Fans every call out to the chosen backends; with none it does nothing (and imports nothing)."""

    def __init__(self, backends: list | None = None):
        self.backends = list(backends or [])

    def log_params(self, params: dict) -> None:
        """params: the config, nested or as flattened dotted keys (train.lr, model.name)."""
        flat = flatten(params)
        for b in self.backends:
            b.log_params(flat)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = _numbers(metrics)
        if clean:
            for b in self.backends:
                b.log_metrics(clean, step)

    def close(self, status: str = "FINISHED") -> None:
        """status: FINISHED, FAILED or KILLED (MLflow's words); closing twice is harmless."""
        backends, self.backends = self.backends, []
        for b in backends:
            b.close(status)


def open_trackers(cfg: Config, run_name: str, main_process: bool = True) -> Trackers:
    """A Trackers that fans out to every backend in cfg.track.backends; a no-op when the list is empty or
    on non-main processes."""
    if not main_process:
        return Trackers()
    check_trackers(cfg)
    return Trackers([BACKENDS[name](cfg, run_name) for name in cfg.track.backends])
