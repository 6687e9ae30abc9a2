"""Optional trackers: none is installed, so stub modules stand in for mlflow, tensorboard and wandb and
record what they are told. No backend means no import; a missing package is a clear config error."""
from __future__ import annotations

import sys
import types

import pytest

from helpers import mod

config, runs, tracking = mod("core.config"), mod("core.rundir"), mod("training.tracking")
ConfigError = config.ConfigError
EPOCH = {"fold0/score": 0.5, "fold0/valid_loss": float("nan"), "fold0/train_loss": 1, "epoch": "swa"}


def cfg_with(*backends: str, extra: tuple[str, ...] = ()):
    return config.load("demo", [f"track.backends=[{','.join(backends)}]", *extra])


def block_imports(monkeypatch, *names: str) -> None:
    """`import name` raises ImportError, as when the package is not installed."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def mlflow(monkeypatch):
    calls = []
    stub = types.ModuleType("mlflow")
    for fn in ("set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "end_run"):
        setattr(stub, fn, lambda *a, _fn=fn, **k: calls.append((_fn, a, k)))
    monkeypatch.setitem(sys.modules, "mlflow", stub)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return calls


@pytest.fixture
def tensorboard(monkeypatch):
    calls = []

    class SummaryWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def __getattr__(self, fn):
            return lambda *a, **k: calls.append((fn, *a, k) if k else (fn, *a))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    return calls


@pytest.fixture
def wandb(monkeypatch):
    calls = []
    run = types.SimpleNamespace(
        config=types.SimpleNamespace(update=lambda params, **k: calls.append(("config", params))),
        log=lambda data, **k: calls.append(("log", data, k)),
        finish=lambda **k: calls.append(("finish", k)))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return run
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls


def test_no_backends_imports_nothing_and_logs_nowhere(workdir, monkeypatch):
    block_imports(monkeypatch, "mlflow", "wandb", "torch.utils.tensorboard")
    cfg = config.load("demo")
    assert cfg.track.backends == []
    tracking.check_trackers(cfg)
    trackers = tracking.open_trackers(cfg, "demo")
    trackers.log_params({"train.lr": 1e-3})
    trackers.log_metrics(EPOCH, step=1)
    trackers.close()
    assert trackers.backends == []


@pytest.mark.parametrize("backend, module", sorted(tracking.MODULES.items()))
def test_a_missing_package_names_the_key_and_the_pip_line(workdir, monkeypatch, backend, module):
    block_imports(monkeypatch, module)
    cfg = cfg_with(backend)
    for call in (lambda: tracking.check_trackers(cfg), lambda: tracking.open_trackers(cfg, "demo")):
        with pytest.raises(ConfigError, match="track.backends") as e:
            call()
        assert f"pip install {backend}" in str(e.value)


def test_mlflow_logs_to_a_file_store_under_the_tracking_dir(workdir, mlflow):
    cfg = cfg_with("mlflow", extra=("track.project=comp",))
    trackers = tracking.open_trackers(cfg, "exp1")
    trackers.log_params({"train": {"lr": 0.001}, "model.name": "x" * 600})
    trackers.log_metrics(EPOCH, step=3)
    trackers.log_metrics({"epoch": "swa"}, step=4)  # nothing numeric: nothing sent
    trackers.close("FAILED")

    uri = (workdir / "outputs" / "tracking" / "mlflow").as_uri()
    assert uri.startswith("file:") and (runs.tracking_dir(cfg) / "mlflow").resolve().as_uri() == uri
    assert mlflow == [
        ("set_tracking_uri", (uri,), {}),
        ("set_experiment", ("comp",), {}),
        ("start_run", (), {"run_name": "exp1"}),
        ("log_params", ({"train.lr": "0.001", "model.name": "x" * 500},), {}),
        ("log_metrics", ({"fold0/score": 0.5, "fold0/train_loss": 1.0},), {"step": 3}),
        ("end_run", (), {"status": "FAILED"}),
    ]


def test_mlflow_defaults_to_the_project_folder_and_obeys_the_tracking_uri_variable(workdir, mlflow, monkeypatch):
    tracking.open_trackers(cfg_with("mlflow", extra=("track.dir=elsewhere",)), "exp1").close()
    assert mlflow[0] == ("set_tracking_uri", ((workdir / "elsewhere" / "mlflow").as_uri(),), {})
    assert mlflow[1] == ("set_experiment", (workdir.name,), {})
    mlflow.clear()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://localhost:5000")
    tracking.open_trackers(cfg_with("mlflow"), "exp1").close()
    assert [c[0] for c in mlflow] == ["set_experiment", "start_run", "end_run"]


def test_tensorboard_writes_scalars_and_the_config_under_the_tracking_dir(workdir, tensorboard):
    trackers = tracking.open_trackers(cfg_with("tensorboard"), "exp1")
    trackers.log_params({"train.lr": 0.001, "model.name": "resnet"})
    trackers.log_metrics(EPOCH, step=2)
    trackers.close()
    assert tensorboard[0] == ("init", str(workdir / "outputs" / "tracking" / "tensorboard" / "exp1"))
    (name, tag, text), *rest = tensorboard[1:]
    assert (name, tag) == ("add_text", "config") and "train.lr: 0.001" in text and "model.name: resnet" in text
    assert rest == [("add_scalar", "fold0/score", 0.5, {"global_step": 2}),
                    ("add_scalar", "fold0/train_loss", 1.0, {"global_step": 2}), ("close",)]


def test_wandb_runs_offline_without_an_api_key(workdir, wandb):
    trackers = tracking.open_trackers(cfg_with("wandb"), "exp1")
    trackers.log_params({"train": {"lr": 0.001}})
    trackers.log_metrics(EPOCH, step=2)
    trackers.close("FAILED")
    assert wandb == [
        ("init", {"project": workdir.name, "name": "exp1", "dir": str(workdir / "outputs" / "tracking"),
                  "mode": "offline"}),
        ("config", {"train.lr": 0.001}),
        ("log", {"fold0/score": 0.5, "fold0/train_loss": 1.0, "epoch": 2}, {}),
        ("finish", {"exit_code": 1}),
    ]
    assert (workdir / "outputs" / "tracking").is_dir()


@pytest.mark.parametrize("env, mode", [({"WANDB_API_KEY": "k"}, "online"),
                                       ({"WANDB_API_KEY": "k", "WANDB_MODE": "disabled"}, "disabled")])
def test_wandb_mode_follows_the_environment(workdir, wandb, monkeypatch, env, mode):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    tracking.open_trackers(cfg_with("wandb"), "exp1").close()
    assert wandb[0][1]["mode"] == mode and wandb[-1] == ("finish", {"exit_code": 0})


def test_every_backend_gets_every_call_and_other_processes_log_nothing(workdir, mlflow, tensorboard, wandb):
    cfg = cfg_with("mlflow", "tensorboard", "wandb")
    quiet = tracking.open_trackers(cfg, "exp1", main_process=False)
    quiet.log_params({"train.lr": 0.001})
    quiet.log_metrics({"cv": 0.9}, step=1)
    quiet.close()
    assert mlflow == tensorboard == wandb == []

    trackers = tracking.open_trackers(cfg, "exp1")
    trackers.log_metrics({"cv": 0.9}, step=1)
    trackers.close()
    trackers.close()  # a second close (an error path after the normal one) does nothing
    assert [c[0] for c in mlflow] == ["set_tracking_uri", "set_experiment", "start_run", "log_metrics", "end_run"]
    assert [c[0] for c in tensorboard] == ["init", "add_scalar", "close"]
    assert [c[0] for c in wandb] == ["init", "log", "finish"]
