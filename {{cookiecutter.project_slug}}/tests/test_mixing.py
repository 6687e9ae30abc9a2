"""Mixup / CutMix (image projects): mixed pixels and soft targets against the formulas, by hand."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import PROJECT, mod

config = mod("core.config")
if config.load(config_dir=PROJECT / "configs").task != "image":  # the bake removes this file from text projects
    pytest.skip("Mixup / CutMix are image tricks", allow_module_level=True)

mixing, targets = mod("training.tricks.mixing"), mod("core.labels")
ConfigError = config.ConfigError
CLS = ["problem=multiclass", "metric=accuracy", "data.target_cols=[y]", "loss.label_smoothing=0"]
SPEC = targets.LabelMap("multiclass", ["y"], classes=["a", "b", "c", "d"])


def seed(s):
    random.seed(s)
    np.random.seed(s)  # timm draws lam (and the CutMix box) from numpy's global RNG
    torch.manual_seed(s)


def make_batch(n=4):
    return {"image": torch.rand(n, 3, 16, 16), "target": torch.arange(n) % 4, "id": list(range(n))}


def onehot(y):
    return F.one_hot(y, 4).float()


@pytest.mark.parametrize("s", [0, 2, 3])
def test_mixup_blends_each_image_and_target_with_the_reversed_batch(workdir, s):
    mix = mixing.build_mixer(config.load("demo", [*CLS, "aug.mixup_alpha=1.0"]), SPEC)
    seed(s)
    b = make_batch()
    image = b["image"].clone()
    out = mix(b)
    lam = out["target"][0, 0].item()  # row 0 is class 0 paired with class 3: its class-0 share is lam
    assert 0.0 < lam < 1.0
    assert torch.allclose(out["image"], lam * image + (1 - lam) * image.flip(0), atol=1e-6)
    assert torch.allclose(out["target"], lam * onehot(b["target"]) + (1 - lam) * onehot(b["target"]).flip(0))
    assert torch.allclose(out["target"].sum(1), torch.ones(4))
    assert torch.equal(b["image"], image) and out["id"] == b["id"]  # the caller's batch is left alone
    seed(s)
    assert torch.equal(mix(make_batch())["image"], out["image"])  # seeding numpy reproduces the mix


def test_label_smoothing_is_applied_to_the_mixed_targets(workdir):
    mix = mixing.build_mixer(config.load("demo", [*CLS, "aug.mixup_alpha=0.4", "loss.label_smoothing=0.2"]), SPEC)
    seed(0)
    b = make_batch()
    out = mix(b)
    smooth = onehot(b["target"]) * 0.8 + 0.2 / 4
    lam = (out["target"][0, 0].item() - 0.05) / 0.8  # on = 0.85 for lam share, off = 0.05
    assert torch.allclose(out["target"], lam * smooth + (1 - lam) * smooth.flip(0), atol=1e-6)
    assert torch.allclose(out["target"].sum(1), torch.ones(4))


@pytest.mark.parametrize("s", [0, 2, 3])
def test_cutmix_pastes_a_box_of_exact_partner_pixels_of_area_one_minus_lam(workdir, s):
    mix = mixing.build_mixer(config.load("demo", [*CLS, "aug.cutmix_alpha=1.0"]), SPEC)
    seed(s)
    b = make_batch()
    image = b["image"].clone()
    out = mix(b)
    own, partner = out["image"] == image, out["image"] == image.flip(0)
    assert (own | partner).all()  # every pixel is an exact copy of one of the two images
    pasted = partner.all(1) & ~own.all(1)  # (N, H, W): taken from the partner (no ties: random images)
    assert torch.equal(pasted, pasted[:1].expand_as(pasted))  # one box for the whole batch
    area = pasted[0].float().mean().item()
    assert 0 < area < 1  # these seeds paste a real box
    rows, cols = pasted[0].any(1).nonzero().flatten(), pasted[0].any(0).nonzero().flatten()
    assert pasted[0, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a rectangle
    target = (1 - area) * onehot(b["target"]) + area * onehot(b["target"]).flip(0)
    assert torch.allclose(out["target"], target, atol=1e-6)
    assert torch.allclose(out["target"].sum(1), torch.ones(4))


def test_an_odd_batch_passes_unmixed_with_the_same_kind_of_targets(workdir):
    mix = mixing.build_mixer(config.load("demo", [*CLS, "aug.mixup_alpha=0.4", "aug.cutmix_alpha=1.0",
                                                  "loss.label_smoothing=0.2"]), SPEC)
    seed(0)
    b = make_batch(5)
    out = mix(b)
    assert torch.equal(out["image"], b["image"])
    assert out["target"].shape == (5, 4) and out["target"].dtype == torch.float32
    assert torch.allclose(out["target"], onehot(b["target"]) * 0.8 + 0.05)


def test_mix_prob_zero_never_mixes_and_alphas_zero_build_nothing(workdir):
    mix = mixing.build_mixer(config.load("demo", [*CLS, "aug.mixup_alpha=0.4", "aug.mix_prob=0"]), SPEC)
    b = make_batch()
    out = mix(b)
    assert torch.equal(out["image"], b["image"]) and torch.equal(out["target"], onehot(b["target"]))
    assert mixing.build_mixer(config.load("demo", CLS), SPEC) is None


@pytest.mark.parametrize("problem,cols,metric", [("multilabel", "[a,b]", "roc_auc"), ("regression", "[y]", "rmse")])
def test_mixing_a_multilabel_or_regression_problem_names_the_key(workdir, problem, cols, metric):
    label_map = targets.LabelMap(problem, ["a", "b"] if problem == "multilabel" else ["y"], mean=[0.0], std=[1.0])
    cfg = config.load("demo", [f"problem={problem}", f"metric={metric}", f"data.target_cols={cols}",
                               "aug.mixup_alpha=0.2"])
    with pytest.raises(ConfigError, match=r"aug\.mixup_alpha"):
        mixing.build_mixer(cfg, label_map)


def test_mixing_a_text_project_and_bad_values_name_their_keys(workdir):
    cfg = config.load("demo", [*CLS, "aug.cutmix_alpha=1.0"])
    cfg.task = "text"  # a text project refuses aug.* keys at load time; build_mixer checks too
    with pytest.raises(ConfigError, match=r"aug\.mixup_alpha"):
        mixing.build_mixer(cfg, SPEC)
    with pytest.raises(ConfigError, match=r"aug\.cutmix_alpha"):
        mixing.build_mixer(config.load("demo", [*CLS, "aug.cutmix_alpha=-1"]), SPEC)
    with pytest.raises(ConfigError, match=r"aug\.mix_prob"):
        mixing.build_mixer(config.load("demo", [*CLS, "aug.mixup_alpha=0.2", "aug.mix_prob=1.5"]), SPEC)
