"""make sanity: the demo model memorises a few rows; a loss that cannot fall and a model that ignores eval mode
both fail loudly (exit 1, SANITY FAILED)."""
import json

import pytest
import torch
import torch.nn.functional as F

from helpers import mod, run_cli

sanity = mod("sanity")
FAST = ["sanity.steps=5", "sanity.samples=0"]


def read_result(workdir, exp="demo"):
    return json.loads((workdir / "outputs" / f"sanity_{exp}" / "sanity.json").read_text())


def test_sanity_overfits_the_demo_rows_and_saves_what_the_model_sees(tiny, workdir, capsys):
    assert run_cli("sanity", "--exp", "demo", *tiny) == 0, capsys.readouterr().err
    result = read_result(workdir)
    assert result["passed"] and result["overfit_passed"] and result["eval_deterministic"]
    assert result["steps"] == 100 and result["rows"] == 32
    assert result["final_loss"] <= 0.1 * result["initial_loss"]
    out = workdir / "outputs" / "sanity_demo"
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    if (out / "augmented.png").exists():  # image project
        assert (out / "augmented.png").read_bytes()[:4] == b"\x89PNG"
    else:
        samples = (out / "samples.txt").read_text()
        assert "[CLS]" in samples and "[SEP]" in samples and "label=" in samples
        assert samples.count("decoded:") == 16
    assert not (workdir / "outputs" / "demo").exists()  # sanity is no experiment: train's folder stays free


def test_sanity_fails_loudly_when_the_loss_cannot_fall(tiny, workdir, capsys):
    assert run_cli("sanity", "--exp", "demo", *tiny, *FAST, "sanity.lr=1e-9") == 1
    err = capsys.readouterr().err
    assert "SANITY FAILED: training loss went from" in err and "sanity.lr" in err
    result = read_result(workdir)
    assert not result["passed"] and not result["overfit_passed"] and result["eval_deterministic"]


class AlwaysDropout(torch.nn.Module):
    """A model whose forward ignores eval(): F.dropout with training=True hard-coded."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, batch):
        return F.dropout(self.inner(batch), p=0.5, training=True)


def test_sanity_catches_a_model_that_ignores_eval_mode(tiny, workdir, capsys, monkeypatch):
    real = sanity.get_modality

    def patched(cfg, assets_dir=None):
        m = real(cfg, assets_dir)
        build = m.build_model
        m.build_model = lambda n, pretrained: AlwaysDropout(build(n, pretrained))
        return m

    monkeypatch.setattr(sanity, "get_modality", patched)
    assert run_cli("sanity", "--exp", "demo", *tiny, *FAST) == 1
    err = capsys.readouterr().err
    assert "SANITY FAILED: two validation passes" in err and "eval" in err
    assert read_result(workdir)["eval_deterministic"] is False


def test_sanity_keys_are_range_checked(tiny, workdir, capsys):
    assert run_cli("sanity", "--exp", "demo", *tiny, "sanity.max_final_loss_ratio=1.5") == 2
    assert "sanity.max_final_loss_ratio" in capsys.readouterr().err


def test_sanity_trains_through_make_trains_own_loop(tiny, workdir, monkeypatch):
    """One trainer: the overfit steps run in training.loop.train_epoch (via training.fit), with the project's
    optimiser groups and a constant schedule, not in a loop of sanity's own."""
    fit = mod("training.fit")
    real, calls = fit.train_epoch, []

    def spy(model, loader, optimizer, scheduler, *args, **kwargs):
        calls.append((type(scheduler).__name__, kwargs["max_steps"]))
        return real(model, loader, optimizer, scheduler, *args, **kwargs)
    monkeypatch.setattr(fit, "train_epoch", spy)
    # 5 steps need not pass the overfit check (exit 1); they must run through the loop
    assert run_cli("sanity", "--exp", "demo", *tiny, "sanity.steps=5", "sanity.samples=0", "sanity.lr=1e-3") in (0, 1)
    assert calls and calls[0][1] == 5  # the first epoch may take every step the check asks for
    result = read_result(workdir)
    assert result["steps"] == 5 and result["lr"] == 1e-3


def test_sanity_lists_the_augmentations_with_the_symmetry_each_assumes(tiny, workdir, capsys):
    if mod("core.config").load("demo").task != "image":
        pytest.skip("text projects have no training augmentation to list")
    quick = ["sanity.steps=5", "sanity.samples=4", "sanity.max_final_loss_ratio=0.9"]
    assert run_cli("sanity", "--exp", "demo", *tiny, *quick, "aug.train=preset", "aug.preset=medium") == 0
    printed = capsys.readouterr().out
    listed = (workdir / "outputs" / "sanity_demo" / "augmentations.txt").read_text()
    assert "aug.preset=medium" in listed and "HorizontalFlip" in listed
    assert "mirrored images keep their label" in listed and "mirrored images keep their label" in printed
    assert read_result(workdir)["augmentations"] == listed.splitlines()
    assert run_cli("sanity", "--exp", "demo", *tiny, *quick) == 0  # the demo's aug.train: [] (digits)
    again = (workdir / "outputs" / "sanity_demo" / "augmentations.txt").read_text()
    assert again.startswith("no per-image training augmentation (aug.train)")
