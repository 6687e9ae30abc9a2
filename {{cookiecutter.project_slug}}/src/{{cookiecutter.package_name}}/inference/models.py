"""The run's trained models: which checkpoints it has (fold k's best.pt or a full fit's seed models), and
loading one into the configured model, with a message naming the tensor when the shapes disagree. A LoRA
checkpoint holds the adapters, pooling and head only: the modality rebuilds the frozen base from the run's
backbone/ folder and they are loaded into it."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import ConfigError, DataError
from ..core.labels import LabelMap
from ..core.rundir import RunPaths, read_cv, run_kind
from ..training.checkpoints import load_trained_state, trained_state


def trained_folds(paths: RunPaths, cv: dict | None = None) -> list[int]:
    cv = read_cv(paths) if cv is None else cv
    folds = cv["folds_run"]
    missing = [k for k in folds if not all(c.exists() for c in fold_checkpoints(paths, k, cv))]
    if missing:
        raise ConfigError(f"{paths.dir} lacks checkpoints for folds {missing}; re-run make train EXP={paths.exp}")
    return folds


def fold_checkpoints(paths: RunPaths, k: int, cv: dict | None = None) -> list[Path]:
    """Fold k's models: its best.pt, or with train.seeds on a k-fold run one best.pt per seed (their
    predictions are averaged into the fold's)."""
    return [paths.checkpoint(k, s) for s in fold_seeds(read_cv(paths) if cv is None else cv)]


def fold_seeds(cv: dict) -> list[int | None]:
    """The seeds of a k-fold run's fold models: train.seeds, or [None] (one model per fold)."""
    return (cv.get("seeds") if cv.get("kind") != "full_fit" else None) or [None]


def run_models(paths: RunPaths) -> list[tuple[str, Path, int | None]]:
    """(name, checkpoint, fold) of every model of the run: fold k's best.pt, or a full fit's seed models."""
    cv = read_cv(paths)
    kind = run_kind(paths, cv)
    if kind == "ensemble":
        raise ConfigError(f"{paths.dir} is an ensemble: make ensemble already wrote its test_preds.csv")
    if kind == "full_fit":
        models = [(f"seed {s}", paths.seed_checkpoint(s), None) for s in cv["seeds"]]
        missing = [name for name, path, _ in models if not path.exists()]
        if missing:
            raise ConfigError(f"{paths.dir} lacks the full-fit models {missing}; re-run the full fit")
        return models
    return [(paths.slot_name(k, s), paths.checkpoint(k, s), k)
            for k in trained_folds(paths, cv) for s in fold_seeds(cv)]


def load_model(mod, label_map: LabelMap, checkpoint: Path, accelerator):
    model = mod.build_model(label_map.n_outputs, pretrained=False)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrong = [k for k, v in state.items() if k in shapes and v.shape != shapes[k]]
    if wrong:  # e.g. a head for another class count: load_state_dict would only say "size mismatch"
        k = wrong[-1]
        raise DataError(f"{checkpoint} does not fit the run's labels.json ({label_map.n_outputs} outputs "
                        f"{label_map.pred_cols[:10]}): its {k} has shape {tuple(state[k].shape)}, the model built from "
                        f"labels.json {tuple(shapes[k])}; the checkpoint or labels.json comes from another run")
    try:
        load_trained_state(model, state)  # under LoRA: adapters, pooling and head into the rebuilt base
    except RuntimeError as e:  # missing / unexpected keys: another architecture than model.name builds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{checkpoint} does not load into the configured model ({first}; {_keys_note(model, state)}); "
                        f"the checkpoint comes from another model.name or another run") from None
    after_load = getattr(mod, "after_load", None)  # text: lora.merge folds the adapters into the base
    return accelerator.prepare(after_load(model) if after_load is not None else model)


def _keys_note(model, state: dict) -> str:
    own = set(trained_state(model))
    missing, extra = sorted(own - set(state)), sorted(set(state) - own)
    return f"{len(missing)} missing keys e.g. {missing[:2]}, {len(extra)} unexpected e.g. {extra[:2]}"
