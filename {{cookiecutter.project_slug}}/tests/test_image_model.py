"""Image backbone switches: gradient checkpointing (same gradients, refused where timm cannot), stochastic
depth (model.drop_path), non-square inputs (data.image_size=[h, w])."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import like_demo, mod, run_cli

config, image = mod("core.config"), mod("modality.image")


def _net(overrides: list[str]):
    cfg = config.load("demo", overrides)
    return image.Modality(cfg).build_model(3, False)


def _grads(model, x, y) -> tuple[dict[str, torch.Tensor], int]:
    """The parameters' gradients, and the bytes the autograd graph saved for the backward pass outside
    checkpointed blocks (a checkpointed block keeps only its input and recomputes the rest)."""
    model.zero_grad(set_to_none=True)
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t
    torch.manual_seed(1)  # the head's dropout draws the same mask in both models
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model({"image": x}), y)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, saved[0]


def test_grad_checkpointing_saves_less_for_backward_and_gives_the_same_gradients(workdir):
    torch.manual_seed(0)
    plain = _net([])
    ckpt = _net(["train.grad_checkpointing=true"])
    ckpt.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    plain.train(), ckpt.train()
    (want, plain_bytes), (got, ckpt_bytes) = _grads(plain, x, y), _grads(ckpt, x, y)
    assert ckpt_bytes < 0.8 * plain_bytes, (ckpt_bytes, plain_bytes)
    assert want.keys() == got.keys() and len(want) > 10
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_grad_checkpointing_of_a_model_timm_cannot_checkpoint_is_refused_naming_the_key(workdir):
    with pytest.raises(config.ConfigError, match="'train.grad_checkpointing'.*dla46_c"):
        _net(["train.grad_checkpointing=true", "model.name=dla46_c"])
    _net(["model.name=dla46_c"])  # without the switch it builds


def test_drop_path_puts_stochastic_depth_modules_at_that_rate(workdir):
    def rates(model):
        return [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates(_net([])) == []
    got = rates(_net(["model.drop_path=0.2"]))
    assert got and max(got) == pytest.approx(0.2) and min(got) > 0
    model = _net(["model.drop_path=0.2"])
    model.train()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model({"image": x}), model({"image": x}))  # random depth in training
    model.eval()
    assert torch.equal(model({"image": x}), model({"image": x}))


@pytest.mark.parametrize("bad", ["model.drop_path=1.0", "model.drop_path=-0.1"])
def test_drop_path_outside_0_1_is_refused(workdir, bad):
    with pytest.raises(config.ConfigError, match="'model.drop_path'"):
        config.load("demo", [bad])


@pytest.mark.parametrize("preset", ["none", "light", "medium", "heavy"])
def test_a_non_square_image_size_resizes_and_augments_to_height_x_width(workdir, preset):
    cfg = config.load("demo", ["aug.train=preset", f"aug.preset={preset}", "data.image_size=[24,40]"])
    m = image.Modality(cfg)
    for train in (True, False):
        out = m.transform(train)(image=np.random.default_rng(0).integers(0, 255, (50, 30, 3), dtype=np.uint8))
        assert out["image"].shape == (24, 40, 3)
    assert "24x40" in mod("modality.augment").describe(cfg.aug, cfg.data.image_size)[0] or preset == "none"


@pytest.mark.parametrize("bad", ["data.image_size=[32]", "data.image_size=[32,0]", "data.image_size=[1,2,3]",
                                 "data.image_size=0"])
def test_an_image_size_that_is_not_a_side_or_height_width_is_refused(workdir, bad):
    with pytest.raises(config.ConfigError, match="'data.image_size'"):
        config.load("demo", [bad])


def test_scale_views_of_a_non_square_batch_scale_both_sides():
    seen = []

    def model(batch):
        seen.append(tuple(batch["image"].shape[-2:]))
        return batch["image"].mean((1, 2, 3)).unsqueeze(1)
    out = image.ImageViews(["identity", "hflip", "scale1.5"])(model, {"image": torch.randn(2, 3, 20, 30)})
    assert out.shape == (2, 3, 1) and sorted(seen) == [(20, 30), (30, 45)]


@pytest.mark.slow
def test_train_and_predict_with_a_non_square_image_size_give_a_valid_submission(tiny, workdir, demo_dir, capsys):
    like_demo("wide")
    args = [*tiny, "data.image_size=[32,48]", "train.folds=[0]", "train.epochs=1"]
    assert run_cli("train", "--exp", "wide", *args) == 0, capsys.readouterr().err
    assert run_cli("predict", "--exp", "wide", "tta.views=[identity,hflip,vflip,rot180,scale1.25]") == 0, \
        capsys.readouterr().err
    assert run_cli("submit", "--exp", "wide") == 0, capsys.readouterr().err
    sub = pd.read_csv(workdir / "submissions" / "wide.csv")
    sample = pd.read_csv(demo_dir / "sample_submission.csv")
    assert sub.columns.tolist() == sample.columns.tolist() and sub.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    assert sub.notna().all().all()
    capsys.readouterr()
    # views that swap height and width are refused before any inference, naming the key
    assert run_cli("predict", "--exp", "wide", "tta.views=[identity,rot90]") == 2
    err = capsys.readouterr().err
    assert "'tta.views'" in err and "rot90" in err and "square" in err


def test_square_only_views_are_fine_for_a_square_size(workdir):
    tta = mod("modality.tta")
    cfg = config.load("demo", ["tta.views=[identity,transpose,rot90,rot270]"])
    tta.check_views(cfg, image.Modality(cfg))
    wide = config.load("demo", ["tta.views=[identity,transpose]", "data.image_size=[32,48]"])
    with pytest.raises(config.ConfigError, match="'tta.views'.*transpose"):
        tta.check_views(wide, image.Modality(wide))
