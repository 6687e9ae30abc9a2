"""Test-time augmentation (TTA): which views exist, checking tta.views, and averaging the views.

    make predict EXP=exp001 ARGS="tta.views=[identity,hflip] tta.reduce=mean"
    make predict EXP=exp001 ARGS="tta.views=[identity,hflip] tta.oof=true"    # OOF and CV with the same views

A view is a transformation of the input whose label is the same as the original's. Each view is
predicted, activated (softmax / sigmoid / de-standardised values) and only then reduced, so logits of
different views are never averaged. The views themselves live in the modality: image.py (flips,
transpose, rotations, scale<f> on the normalised batch, on the device) and text.py (head / tail /
head_tail truncations of texts longer than data.max_len).

reduce = mean: the arithmetic mean of the views' probabilities or values.
reduce = gmean: the geometric mean of probabilities, renormalised: a view that is confident a class is
    wrong pulls it down harder than under the mean. Softmax outputs: exp(mean(log p)) divided by its row
    sum; multilabel (sigmoid): each column a Bernoulli, gm(p) / (gm(p) + gm(1 - p)). Not for regression
    (values can be negative). Probabilities are clamped to >= 1e-7 before the logs.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import ConfigError
from ..core.schema import Config, image_hw

EPS = 1e-7


def check_views(cfg: Config, mod) -> None:
    """Refuse unknown views (naming the modality's valid ones) and gmean of regression values."""
    bad = [v for v in cfg.tta.views if not mod.is_view(v)]
    if bad:
        raise ConfigError(f"config key 'tta.views' has unknown view(s) {bad}; {cfg.task} projects know "
                          f"{', '.join(mod.VIEWS)}")
    square = [v for v in cfg.tta.views if v in getattr(mod, "SQUARE_ONLY", ())]
    h, w = image_hw(cfg.data.image_size) if cfg.task == "image" else (0, 0)
    if square and h != w:
        raise ConfigError(f"config key 'tta.views' has {square}, which swap height and width: they need a square "
                          f"data.image_size, got {cfg.data.image_size} (height x width); drop them (flips, rot180 "
                          f"and scale<f> keep the shape)")
    if cfg.tta.reduce == "gmean" and cfg.problem == "regression":
        raise ConfigError("config key 'tta.reduce' is gmean, which needs probabilities; regression values can "
                          "be negative: use tta.reduce=mean")


def describe(cfg: Config) -> dict:
    """What predict records next to its outputs (outputs/<exp>/predict.json, cv.json's `tta`)."""
    out = {"views": list(cfg.tta.views), "reduce": cfg.tta.reduce}
    if cfg.task == "image":
        out["batched"] = cfg.tta.batched
    return out


def reduce_views(probs: np.ndarray, how: str, problem: str) -> np.ndarray:
    """probs (V, N, C): activated predictions of V views -> (N, C). A single view is returned as it is."""
    probs = np.asarray(probs)
    if len(probs) == 1:
        return probs[0]
    if how == "mean":
        return probs.astype(np.float64).mean(0)
    if how != "gmean":
        raise ConfigError(f"config key 'tta.reduce' is {how!r}; choose mean or gmean")
    if problem == "regression":
        raise ConfigError("config key 'tta.reduce' gmean is not defined for regression values; use mean")
    p = np.clip(probs.astype(np.float64), EPS, 1.0)
    g = np.exp(np.log(p).mean(0))
    if problem == "multilabel":
        g0 = np.exp(np.log(np.clip(1.0 - probs.astype(np.float64), EPS, 1.0)).mean(0))
        return g / (g + g0)
    return g / g.sum(-1, keepdims=True)
