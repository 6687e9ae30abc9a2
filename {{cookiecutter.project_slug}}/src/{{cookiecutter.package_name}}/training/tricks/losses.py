"""Training losses (loss.*). The validation loss and the metric never use these options.

* ce (auto for binary / multiclass): cross-entropy over the softmax.
  loss.label_smoothing s trains towards (1 - s) * onehot + s / C. Helps accuracy-type metrics, which
  ignore calibration, and noisy labels; hurts log_loss (the model learns to stay under-confident).
* loss.class_weights: none | balanced (n / (k * count), sklearn's "balanced") | [w0, w1, ...] one per
  class. Multilabel: one pos_weight per target column, balanced = negatives / positives. Helps macro
  metrics (f1_macro, recall of rare classes) on imbalanced data; distorts the predicted probabilities,
  which hurts log_loss and calibration (AUC only ranks, but the rare-class shift rarely helps it).
  Weighted losses are averaged over the batch size (not over the sum of the weights), so a mixed and
  an unmixed batch are on the same scale.
* focal: sum_c -w_c t_c (1 - p_c)^gamma log p_c (loss.focal_gamma; gamma = 0 is cross-entropy). Down-
  weights the easy, already well-classified examples: for heavy imbalance with many easy negatives.
  Useless on balanced data, and it under-states confidence (bad for log_loss), like smoothing.
* bce (auto for multilabel): sigmoid cross-entropy per column; smoothing pulls targets to 0.5:
  y * (1 - s) + 0.5 * s.
* mse (auto for regression) on the standardised targets: the RMSE-matching loss, but outliers
  dominate it. smooth_l1 (Huber, beta = 1 standard deviation) is L1 beyond 1 sd: for regression
  targets with outliers or heavy tails; slightly worse than mse when the metric is rmse on clean data.
Targets are class indices (N,) or, after Mixup / CutMix, distributions (N, C) that the mixer already
smoothed: those are used as given. Logits are cast to float32 first (mixed precision).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...core.errors import ConfigError
from ...core.labels import LabelMap
from ...core.schema import Config

AUTO = {"binary": "ce", "multiclass": "ce", "multilabel": "bce", "regression": "mse"}
FITS = {"ce": ("binary", "multiclass"), "focal": ("binary", "multiclass"), "bce": ("multilabel",),
        "mse": ("regression",), "smooth_l1": ("regression",)}
LossFn = Callable[..., torch.Tensor]


def loss_name(cfg: Config, label_map: LabelMap) -> str:
    name = AUTO[label_map.problem] if cfg.loss.name == "auto" else cfg.loss.name
    if label_map.problem not in FITS.get(name, ()):
        fits = " or ".join(k for k, v in FITS.items() if label_map.problem in v)
        raise ConfigError(f"config key 'loss.name' is {name!r}, which does not fit a {label_map.problem} problem; "
                          f"use auto or {fits}")
    return name


def class_weights(cfg: Config, label_map: LabelMap, y: np.ndarray) -> torch.Tensor | None:
    """Per-class weights (binary / multiclass) or per-column pos_weight (multilabel); None = unweighted."""
    w = cfg.loss.class_weights
    if isinstance(w, str) and w == "none":
        return None
    if label_map.problem == "regression":
        raise ConfigError("config key 'loss.class_weights' does not apply to regression; set it to none")
    n = label_map.n_outputs
    what = (f"classes {label_map.classes}" if label_map.classes
            else f"target columns {label_map.target_cols} (pos_weight)")
    if isinstance(w, list):
        if len(w) != n:
            raise ConfigError(f"config key 'loss.class_weights' has {len(w)} weights; give one per {what}")
        if not all(np.isfinite(v) and v >= 0 for v in w):
            raise ConfigError(f"config key 'loss.class_weights' must hold finite numbers >= 0, got {w}")
        return torch.tensor(w, dtype=torch.float32)
    y = np.asarray(y)
    if label_map.problem == "multilabel":  # pos_weight = negatives / positives; 1 where a column is constant
        pos = y.sum(0)
        neg = len(y) - pos
        return torch.tensor(np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)
    counts = np.bincount(y.reshape(-1).astype(np.int64), minlength=n)
    # sklearn's compute_class_weight("balanced"); a class absent from this fold's rows gets 1 (it raises)
    return torch.tensor(np.where(counts > 0, len(y) / (n * np.maximum(counts, 1)), 1.0), dtype=torch.float32)


def soft_targets(target: torch.Tensor, n: int, smoothing: float) -> torch.Tensor:
    """Class indices -> smoothed one-hot (as F.cross_entropy's label_smoothing); distributions as given."""
    if target.ndim == 2:
        return target.float()
    return F.one_hot(target.long(), n).float() * (1 - smoothing) + smoothing / n


def focal_loss(logits: torch.Tensor, t: torch.Tensor, gamma: float, weight: torch.Tensor | None,
               reduce: bool = True) -> torch.Tensor:
    """Multi-class focal loss against the target distribution t (N, C); mean over the batch (or per row)."""
    logp = F.log_softmax(logits, -1)
    per_class = -t * logp
    if gamma:
        per_class = per_class * (1 - logp.exp()).clamp(min=0) ** gamma
    if weight is not None:
        per_class = per_class * weight
    per_row = per_class.sum(-1)
    return per_row.mean() if reduce else per_row


def build_loss(cfg: Config, label_map: LabelMap, train_targets: np.ndarray) -> LossFn:
    """The training loss `loss(logits, target, sample_weight=None) -> scalar` (sample_weight: per row). `train_targets`: the encoded targets of this
    fold's training rows (class indices (N,) or float (N, T)), for loss.class_weights=balanced."""
    name = loss_name(cfg, label_map)
    s, gamma = cfg.loss.label_smoothing, cfg.loss.focal_gamma
    if label_map.problem == "regression" and s:
        raise ConfigError("config key 'loss.label_smoothing' does not apply to regression; set it to 0")
    if name == "focal" and gamma < 0:
        raise ConfigError(f"config key 'loss.focal_gamma' must be >= 0, got {gamma}")
    weight = class_weights(cfg, label_map, train_targets)
    n = label_map.n_outputs
    on_device: dict = {}

    def loss(logits: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        w = None
        if weight is not None:
            w = on_device.get(logits.device)
            if w is None:
                w = on_device[logits.device] = weight.to(logits.device)
        if name in ("ce", "focal"):
            t = soft_targets(target, n, s)
            per_row = (F.cross_entropy(logits, t, weight=w, reduction="none") if name == "ce"
                       else focal_loss(logits, t, gamma, w, reduce=False))
        else:
            target = target.float()
            if name == "bce":
                per_row = F.binary_cross_entropy_with_logits(logits, target * (1 - s) + 0.5 * s, pos_weight=w,
                                                             reduction="none")
            elif name == "smooth_l1":
                per_row = F.smooth_l1_loss(logits, target, reduction="none")
            else:
                per_row = F.mse_loss(logits, target, reduction="none")
            per_row = per_row.reshape(len(per_row), -1).mean(-1)
        if sample_weight is not None:  # pseudo-labelled rows: mean of weight * loss (real rows weigh 1)
            per_row = per_row * sample_weight.to(per_row.device, per_row.dtype)
        return per_row.mean()

    return loss
