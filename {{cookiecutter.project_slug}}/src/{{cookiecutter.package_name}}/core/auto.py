"""What `auto` means for the keys whose best default depends on the model and the metric.

    make config EXP=exp001                    # shows the numbers auto became
    make train EXP=exp001 ARGS="train.lr=3e-4 loss.label_smoothing=0"   # any number replaces auto

config.load replaces every `auto` below with a number before anything runs, so the config.yaml saved with
a run holds the values it trained with. The README's "Defaults" section has the measurements.

train.lr
  image, from scratch: 1e-3.
  image, pretrained BatchNorm CNN (ResNet, EfficientNet, RegNet, MobileNet...): 2e-3. A fine-tune of a few
      epochs must move the features to the new data quickly, and BatchNorm keeps a large step stable
      (efficientnet_lite0, 2 epochs, a fold model's test score: 1e-3 was 0.034 below 2e-3, 5e-4 0.122 below).
  image, pretrained LayerNorm family (ViT, DeiT, Swin, ConvNeXt, EVA, MaxViT...): 1e-4, the rate of their
      published fine-tunes; CNN rates make them diverge. Not measured here (no offline weights).
  text, pretrained: by the model's width (hidden_size from model.name/config.json for a local folder, else
      guessed from the name: large / xl -> 1024, small / mini / tiny -> 384, otherwise 768):
      <= 384 (MiniLM, small BERTs): 1e-4 (all-MiniLM-L6-v2, 1 epoch: 2e-5 was 0.038 below on test);
      <= 768 (base models): 3e-5; wider (large): 1e-5, as in their published fine-tunes (not measured here).
  text, random weights: 1e-4.
loss.label_smoothing
  0.1 for binary / multiclass scored on hard labels (accuracy, f1, f1_macro, mcc): softer targets keep
  the logits from growing without bound on the few rows of a fold. 0 where the metric reads the
  probabilities (log_loss, roc_auc) or the problem is multilabel / regression: smoothing shrinks
  probabilities towards uniform, which log loss punishes.
model.pooling (text)
  stays `auto` in the saved config: it is resolved when the model is built, from the backbone's own config
  (modality/text_model.py: last_token for decoder-only models, mean for encoders).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import ConfigError

HARD_LABEL_METRICS = ("accuracy", "f1", "f1_macro", "mcc")
IMAGE_LR = {"scratch": 1e-3, "batchnorm": 2e-3, "layernorm": 1e-4}
TEXT_LR_BY_WIDTH = ((384, 1e-4), (768, 3e-5), (10**9, 1e-5))   # (largest hidden_size, lr), pretrained
TEXT_LR_SCRATCH = 1e-4
# timm families normalised with LayerNorm (transformers and their convolutional relatives). A name outside
# the list is taken for a BatchNorm CNN.
LAYERNORM = re.compile(r"^(vit|deit|swin|convnext|eva|beit|cait|xcit|maxvit|maxxvit|coat|pvt|twins|levit|"
                       r"efficientformer|edgenext|mvit|hiera|caformer|convformer|poolformer|tiny_vit|fastvit|"
                       r"davit|focalnet|nextvit|crossvit|volo|gcvit|flexivit|samvit|vitamin|mambaout)")


def _is_auto(key: str, value) -> bool:
    if isinstance(value, str):
        if value != "auto":
            raise ConfigError(f"config key '{key}' is {value!r}; give a number or auto")
        return True
    return False


def text_width(name: str) -> int:
    """hidden_size of a local model folder's config.json; else a guess from the hub id."""
    config = Path(name) / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            width = data.get("hidden_size") or data.get("d_model") or data.get("dim")
            if isinstance(width, int):
                return width
        except (OSError, ValueError):
            pass  # an unreadable config is the model loader's error to report, with its own message
    low = name.lower()
    if re.search(r"large|xl\b|xxl", low):
        return 1024
    if re.search(r"small|mini|tiny|xsmall", low):
        return 384
    return 768


def auto_lr(cfg) -> float:
    if cfg.task == "image":
        if not cfg.model.pretrained:
            return IMAGE_LR["scratch"]
        family = "layernorm" if LAYERNORM.match(cfg.model.name.split("/")[-1]) else "batchnorm"
        return IMAGE_LR[family]
    if not cfg.model.pretrained:
        return TEXT_LR_SCRATCH
    width = text_width(cfg.model.name)
    return next(lr for limit, lr in TEXT_LR_BY_WIDTH if width <= limit)


def resolve(cfg) -> None:
    """Replace each `auto` of cfg in place."""
    if _is_auto("train.lr", cfg.train.lr):
        cfg.train.lr = auto_lr(cfg)
    if _is_auto("loss.label_smoothing", cfg.loss.label_smoothing):
        hard = cfg.problem in ("binary", "multiclass") and cfg.metric in HARD_LABEL_METRICS
        cfg.loss.label_smoothing = 0.1 if hard else 0.0
