"""Mixup / CutMix for image classification (aug.mixup_alpha, aug.cutmix_alpha), via timm's Mixup.

Each training batch is paired with itself reversed: Mixup blends whole images, x = lam * x + (1 - lam)
* x.flip(0); CutMix pastes a box of the partner image and sets lam to the area kept. The targets become
lam * onehot + (1 - lam) * onehot.flip(0), with loss.label_smoothing applied here (the loss takes these
distributions as given). lam ~ Beta(alpha, alpha) from numpy's global RNG (seeded by the training seed);
aug.mix_prob = probability a batch is mixed, aug.mix_switch_prob = CutMix's share when both are on.
Regularises image models trained for many epochs; hurts short runs (the model never fits the clean
data) and tasks whose label depends on small local details or counts (a blend or a pasted box changes
the true label). Not for multilabel or regression here. timm mixes in pairs: an odd-sized batch (the
last one) passes unmixed, with the same smoothed one-hot targets, so the loss sees one kind of target.
"""
from __future__ import annotations

from typing import Callable

from timm.data import Mixup
from timm.data.mixup import mixup_target

from ...core.errors import ConfigError
from ...core.labels import LabelMap
from ...core.schema import Config


def build_mixer(cfg: Config, label_map: LabelMap) -> Callable[[dict], dict] | None:
    """None when both alphas are 0; else batch {"image": (N,3,H,W), "target": (N,) long} -> a new batch
    with mixed "image" and soft "target" (N, C) float."""
    a = cfg.aug
    for key, value in (("mixup_alpha", a.mixup_alpha), ("cutmix_alpha", a.cutmix_alpha)):
        if value < 0:
            raise ConfigError(f"config key 'aug.{key}' must be >= 0 (0 = off), got {value}")
    if a.mixup_alpha == 0 and a.cutmix_alpha == 0:
        return None
    if cfg.task != "image" or label_map.problem not in ("binary", "multiclass"):
        raise ConfigError(f"config key 'aug.mixup_alpha' / 'aug.cutmix_alpha': Mixup / CutMix need an image "
                          f"binary or multiclass project, this one is {cfg.task} {label_map.problem}; set both to 0")
    for key, value in (("mix_prob", a.mix_prob), ("mix_switch_prob", a.mix_switch_prob)):
        if not 0 <= value <= 1:
            raise ConfigError(f"config key 'aug.{key}' must be in [0, 1], got {value}")
    n, smoothing = label_map.n_outputs, cfg.loss.label_smoothing
    mixup = Mixup(mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha, prob=a.mix_prob,
                  switch_prob=a.mix_switch_prob, mode="batch", label_smoothing=smoothing, num_classes=n)

    def mix(batch: dict) -> dict:
        x, y = batch["image"], batch["target"]
        if len(x) % 2:
            return {**batch, "target": mixup_target(y, n, lam=1.0, smoothing=smoothing)}
        x, y = mixup(x.clone(), y)  # timm mixes in place: leave the caller's tensor alone
        return {**batch, "image": x, "target": y}

    return mix
