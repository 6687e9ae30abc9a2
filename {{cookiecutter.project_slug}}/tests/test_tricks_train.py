"""Every trick as a switch of the real training run: it trains, and it does what it claims there."""
import json
import math

import pandas as pd
import pytest
import torch
from accelerate.utils import set_seed

from helpers import like_demo, mod, run_cli

from conftest import PROBLEM

config = mod("core.config")
CLASSIFICATION = PROBLEM in ("binary", "multiclass")


def _task():
    return config.load("demo").task


SWITCHES = [
    ["adv.method=fgm", "adv.start_epoch=1"],
    ["adv.method=pgd", "adv.start_epoch=1", "adv.steps=2"],
    ["adv.method=awp", "adv.start_epoch=1"],
    ["ema.enabled=true", "ema.decay=0.9"],
    ["swa.enabled=true", "swa.lr=0.001"],
    ["rdrop.alpha=1.0"],
    ["train.accum_steps=2", "train.max_grad_norm=1.0"],
    ["train.precision=bf16"],
    ["optim.llrd=0.8", "optim.head_lr=0.01", "optim.schedule=linear"],
    ["optim.name=sgd", "train.lr=0.05"],
    ["train.freeze_epochs=1", "train.freeze_layers=1"],
    ["loss.name=smooth_l1"] if PROBLEM == "regression" else ["loss.label_smoothing=0.1", "loss.class_weights=balanced"],
]
if CLASSIFICATION:
    SWITCHES.append(["loss.name=focal"])
    SWITCHES.append(["aug.mixup_alpha=0.4", "aug.cutmix_alpha=1.0"])  # skipped in text projects below


def _train(exp, tiny, *extra) -> dict:
    like_demo(exp)
    assert run_cli("train", "--exp", exp, *tiny, "train.folds=[0]", "train.epochs=2", *extra) == 0
    return json.loads(open(f"outputs/{exp}/cv.json").read())


@pytest.mark.slow
@pytest.mark.parametrize("switch", SWITCHES, ids=[" ".join(s) for s in SWITCHES])
def test_each_switch_trains_and_scores(tiny, workdir, switch):
    if any(s.startswith("aug.") for s in switch) and _task() == "text":
        pytest.skip("mixup/cutmix are image tricks")
    result = _train("trick", tiny, *switch, "train.epochs=1")
    assert math.isfinite(result["cv"])
    oof = pd.read_csv("outputs/trick/fold0/oof.csv")
    assert len(oof) > 0 and not oof.isna().any().any()


def test_nothing_changes_before_the_attack_starts(tiny, workdir):
    base = _train("plain", tiny)
    late = _train("late", tiny, "adv.method=awp", "adv.start_epoch=3")
    assert late["cv"] == base["cv"]
    assert pd.read_csv("outputs/plain/fold0/oof.csv").equals(pd.read_csv("outputs/late/fold0/oof.csv"))
    early = _train("early", tiny, "adv.method=fgm", "adv.start_epoch=1", "adv.eps=5.0")
    assert not pd.read_csv("outputs/plain/fold0/oof.csv").equals(pd.read_csv("outputs/early/fold0/oof.csv"))


def test_validation_and_checkpoint_use_the_ema_weights(tiny, workdir):
    # A decay this close to 1 keeps the EMA at the initial weights while the model itself moves.
    _train("ema", tiny, "ema.enabled=true", "ema.decay=0.99999999", "ema.warmup=false", "train.lr=0.01")
    cfg = config.load("demo", tiny)
    set_seed(cfg.seed + 0)  # the seed fit_fold uses before building fold 0's model
    init = mod("modality").get_modality(cfg).build_model(mod("core.labels").LabelMap.load(
        "outputs/ema/labels.json").n_outputs, cfg.model.pretrained).state_dict()
    saved = torch.load("outputs/ema/fold0/best.pt", weights_only=True)["model"]
    for name, value in init.items():
        if value.is_floating_point() and "running" not in name:
            assert torch.allclose(saved[name], value, atol=1e-4), name


def test_schedule_steps_once_per_optimiser_step_under_accumulation(tiny, workdir):
    _train("accum", tiny, "train.accum_steps=3", "train.min_lr=0.0", "train.warmup=0.0")
    history = pd.read_csv("outputs/accum/history.csv")
    # cosine annealing reaches its floor exactly at the last optimiser step, and rises after it
    assert history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-9)


def test_fp16_on_cpu_is_refused_before_training(tiny, workdir, capsys):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on a GPU")
    assert run_cli("train", "--exp", "fp16", *tiny, "train.precision=fp16") == 2
    assert "train.precision" in capsys.readouterr().err


def test_compile_switch_compiles_the_model(tiny, workdir, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(type(m).__name__) or m)
    _train("compiled", tiny, "train.compile=true", "train.epochs=1")
    assert calls, "train.compile=true did not call torch.compile"
