"""Test predictions: every fold's best checkpoint, averaged.

    python -m <package>.predict --exp exp001 [key=value ...]
    make predict EXP=exp001

Reads outputs/<exp>/config.yaml (overrides apply on top, e.g. data.dir for a Kaggle notebook's
input folder or train.eval_batch_size), labels.json and fold<k>/best.pt. Writes fold<k>/test_preds.csv
and test_preds.csv: the id column plus the same prediction columns as oof_preds.csv, in test.csv order.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .cli import run_stage
from .config import CONFIG_DIR, ConfigError, load, parse_overrides, read_yaml
from .data import load_test
from .loop import infer
from .modality import get_modality
from .runs import RunPaths, get_logger, write_csv
from .targets import TargetSpec
from .train import make_accelerator, preds_frame


def open_run(exp: str | None, overrides: list[str], stage: str):
    """The run's own saved config (+ overrides), its paths and label map."""
    if not exp:
        raise ConfigError(f"name the experiment: make {stage} EXP=<name>")
    # Find the run folder without resolving configs/ (a notebook may have only outputs/<exp>/).
    outputs = parse_overrides(overrides).get("paths", {}).get("outputs")
    default = CONFIG_DIR / "default.yaml"
    if outputs is None and default.exists():
        outputs = read_yaml(default).get("paths", {}).get("outputs")
    config_file = Path(outputs or "outputs") / exp / "config.yaml"
    if not config_file.exists():
        raise ConfigError(f"{config_file} does not exist: run `make train EXP={exp}` first")
    cfg = load(exp, overrides, base=config_file)
    paths = RunPaths(cfg)
    spec = TargetSpec.load(paths.require(paths.labels, "train"))
    return cfg, paths, spec


def trained_folds(paths: RunPaths) -> list[int]:
    cv = json.loads(paths.require(paths.cv, "train").read_text())
    folds = cv["folds_run"]
    missing = [k for k in folds if not paths.checkpoint(k).exists()]
    if missing:
        raise ConfigError(f"{paths.dir} lacks checkpoints for folds {missing}; re-run make train EXP={paths.exp}")
    return folds


def run(exp: str | None, overrides: list[str]):
    cfg, paths, spec = open_run(exp, overrides, "predict")
    folds = trained_folds(paths)
    accelerator = make_accelerator(cfg)
    log = get_logger()
    test = load_test(cfg)
    mod = get_modality(cfg, paths.backbone)
    if cfg.data.check_inputs:
        mod.check_inputs(test, cfg.data.test_file)
    loader = accelerator.prepare(mod.loader(test, None, False, cfg.train.eval_batch_size or 2 * cfg.train.batch_size))
    total = np.zeros((len(test), spec.n_outputs))
    for k in folds:
        model = mod.build_model(spec.n_outputs, pretrained=False)
        state = torch.load(paths.checkpoint(k), map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        model = accelerator.prepare(model)
        preds, _ = infer(model, loader, accelerator, spec, f"fold {k} test", cfg.train.progress)
        if accelerator.is_main_process:
            write_csv(paths.fold_test_preds(k), preds_frame(test[cfg.data.id_col], cfg.data.id_col, preds, spec))
        total += preds
        accelerator.free_memory()
        log.info(f"fold {k}: predicted {len(test)} test rows")
    if accelerator.is_main_process:
        write_csv(paths.test_preds, preds_frame(test[cfg.data.id_col], cfg.data.id_col, total / len(folds), spec))
    log.info(f"{paths.test_preds}: mean of folds {folds}")


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
