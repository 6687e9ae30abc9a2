"""The modality layer: image.py or text.py (the project keeps the one it was baked for) and tta.py.

Both define `Modality(cfg, assets_dir=None)` with the same methods:
    check_inputs(df, file)                      every image decodes / every text is non-empty, or DataError
    warm(df)                                    image data.cache: decode df's images once (text: nothing)
    save_assets(dir)                            what inference needs besides weights (tokenizer, config)
    loader(df, targets, train, batch_size)      a DataLoader yielding dicts of tensors (+ 'target')
    build_model(n_outputs, pretrained)          nn.Module mapping such a dict to logits (N, n_outputs)
    VIEWS, is_view(name)                        the test-time views it knows (tta.views, see tta.py)
Text also has after_load(model) (inference, once a checkpoint is loaded: lora.merge); callers look it up
with getattr. Text's model code is in text_model.py (backbone, pooling, head, tricks) and lora.py (peft).
Image views run in the forward (Modality.views(names) -> training.loop.infer's `views` hook); text views are
items of the inference loader (loader(..., views=names)), mapped back to rows by the dataset's `slots`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..core.schema import Config


def get_modality(cfg: Config, assets_dir: Path | None = None):
    module = importlib.import_module(f"{__package__}.{cfg.task}")
    return module.Modality(cfg, assets_dir)
