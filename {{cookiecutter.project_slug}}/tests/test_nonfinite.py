"""Non-finite losses stop training with fold, epoch and step; a NaN metric is never the best checkpoint;
train.deterministic switches deterministic kernels on; augmentations follow the seed."""
from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from helpers import PROJECT, like_demo, mod, run_cli

config, loop, kfold, evals = mod("core.config"), mod("training.loop"), mod("training.kfold"), mod("training.evals")
setup = mod("training.setup")
TASK = config.load(config_dir=PROJECT / "configs").task


def _nan_at(monkeypatch, epoch: int, step: int) -> None:
    """The training loss of (epoch, step) becomes NaN (fold 0; steps count from 1 in each epoch)."""
    at = {"epoch": 0, "step": 0}
    fit_epoch, loss_of = evals.fit_epoch, loop.Tricks.loss_of

    def counting_fit_epoch(cfg, fit, accelerator, e, desc, **kwargs):
        at.update(epoch=e, step=0)
        return fit_epoch(cfg, fit, accelerator, e, desc, **kwargs)

    def poisoned(self, model, batch):
        at["step"] += 1
        loss = loss_of(self, model, batch)
        return loss * float("nan") if (at["epoch"], at["step"]) == (epoch, step) else loss
    monkeypatch.setattr(evals, "fit_epoch", counting_fit_epoch)
    monkeypatch.setattr(loop.Tricks, "loss_of", poisoned)


@pytest.mark.parametrize("epoch, step", [(1, 3), (2, 2)])
def test_a_nan_loss_stops_training_naming_fold_epoch_and_step(tiny, workdir, monkeypatch, capsys, epoch, step):
    like_demo("nan")
    _nan_at(monkeypatch, epoch, step)
    where = f"fold 0 epoch {epoch} step {step}:"
    code = run_cli("train", "--exp", "nan", *tiny, "train.folds=[0]", "train.epochs=2")
    err = capsys.readouterr().err
    assert code == 2 and where in err and "nan" in err and "train.lr" in err, err
    run = workdir / "outputs" / "nan"
    assert not (run / "cv.json").exists()
    assert json.loads((run / "run.json").read_text())["status"].startswith("failed")
    state = run / "fold0" / "last.pt"
    if epoch > 1:  # the epoch before the NaN is the resume point, and its weights are finite
        saved = torch.load(state, weights_only=False)
        assert saved["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    else:
        assert not state.exists()


@pytest.mark.parametrize("nan_epoch, best_epoch", [(1, 2), (2, 1)])
def test_a_nan_metric_is_never_the_best_checkpoint(tiny, workdir, monkeypatch, nan_epoch, best_epoch):
    like_demo("nanmetric")
    score, calls = kfold.score, {"n": 0}

    def flaky(metric, problem, y, preds):
        calls["n"] += 1
        return math.nan if calls["n"] == nan_epoch else score(metric, problem, y, preds)
    monkeypatch.setattr(kfold, "score", flaky)
    assert run_cli("train", "--exp", "nanmetric", *tiny, "train.folds=[0]", "train.epochs=2") == 0
    run = workdir / "outputs" / "nanmetric"
    assert json.loads((run / "cv.json").read_text())["best_epochs"] == [best_epoch]
    assert torch.load(run / "fold0" / "best.pt", weights_only=False)["epoch"] == best_epoch


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, batch):
        return self.lin(batch["x"])


class _Accelerator:
    """Just enough of Accelerate for train_epoch; `skips` says which optimiser steps the scaler skipped."""
    device, is_main_process, sync_gradients = torch.device("cpu"), True, True

    def __init__(self, scaled: bool, skips=()):
        self.scaler = object() if scaled else None
        self._skips, self._step = list(skips), 0

    @property
    def optimizer_step_was_skipped(self):
        self._step += 1
        return self._skips[self._step - 1]

    def accumulate(self, model):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def reduce(self, t, reduction):
        return t


def _epoch(acc, poison_steps, max_skipped=3, n_batches=6):
    torch.manual_seed(0)
    net = _Net()
    batches = [{"x": torch.randn(8, 4), "target": torch.randint(0, 3, (8,))} for _ in range(n_batches)]
    for i in poison_steps:
        batches[i - 1]["x"] = batches[i - 1]["x"] * float("nan")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    tricks = loop.Tricks(loss_fn=lambda o, t, w=None: torch.nn.functional.cross_entropy(o, t), problem="multiclass")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        loop.train_epoch(net, batches, opt, sched, acc, tricks, epoch=4, progress=False, max_skipped_steps=max_skipped)
    except loop.NonFiniteLoss as e:
        return e, net, before
    return None, net, before


def test_without_loss_scaling_the_nan_step_never_reaches_the_weights():
    err, net, _ = _epoch(_Accelerator(scaled=False), poison_steps=[1])
    assert (err.epoch, err.step) == (4, 1) and "training loss is nan" in str(err)
    torch.manual_seed(0)
    untouched = _Net()  # same init: step 1 raised before its optimiser step
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), untouched.state_dict().values()))


def test_fp16_tolerates_skipped_steps_until_too_many_in_a_row():
    err, *_ = _epoch(_Accelerator(scaled=True, skips=[True, False, True, True, False, False]), poison_steps=[1, 3, 4])
    assert err is None  # at most 2 in a row
    err, *_ = _epoch(_Accelerator(scaled=True, skips=[False, True, True, True, False, False]), poison_steps=[2, 3, 4])
    assert err is not None and err.step == 4 and "3 optimiser steps in a row" in str(err)


def test_deterministic_switch_turns_deterministic_kernels_on_and_off(tiny, workdir):
    try:
        setup.make_accelerator(config.load("demo", [*tiny, "train.deterministic=true"]))
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        like_demo("det")
        assert run_cli("train", "--exp", "det", *tiny, "train.deterministic=true", "train.folds=[0]",
                       "train.epochs=1") == 0
        setup.make_accelerator(config.load("demo", tiny))
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        setup.configure_determinism(False)


@pytest.mark.skipif(TASK != "image", reason="image augmentations")
def test_augmentations_follow_the_loaders_generator_not_torchs_seed_nor_the_workers(demo_dir, workdir):
    import pandas as pd
    df = pd.read_csv(demo_dir / "train.csv", dtype=str).head(16)

    def images(seed, workers=0, torch_seed=0):
        cfg = config.load("demo", [f"data.dir={demo_dir}", f"train.num_workers={workers}", "aug.train=[{name: "
                                   "HorizontalFlip, p: 0.5}, {name: RandomBrightnessContrast, p: 0.9}]"])
        torch.manual_seed(torch_seed)
        loader = mod("modality").get_modality(cfg).loader(df, np.zeros(len(df), dtype=np.int64), True, 16,
                                                          generator=torch.Generator().manual_seed(seed))
        return [b["image"] for _ in range(2) for b in loader]  # two epochs: persistent workers
    first = images(0)
    assert all(torch.equal(a, b) for a, b in zip(first, images(0, workers=2, torch_seed=5)))
    assert not torch.equal(first[0], first[1])  # the 2nd epoch draws new augmentations
    assert not torch.equal(first[0], images(1)[0])
