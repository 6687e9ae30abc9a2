"""What a bundle carries of each run, and the checks that it is all there before anything is written.

A k-fold, pseudo or full-fit run: config.yaml, labels.json, cv.json (its kind, folds or seeds), predict.json
(the views and ARGS of make predict), the checkpoints ({"model": state dict} only: no optimiser, no RNG,
fp16 with package.half=true) and, for text, backbone/ (tokenizer and model config). An ensemble: config.yaml,
labels.json, cv.json (method, weights), meta_models.pkl for stack, and each member as a run of its own.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.config import load
from ..core.errors import ConfigError
from ..core.rundir import RunPaths, read_cv, run_kind
from ..inference.models import run_models

OWN_FILES = ("config.yaml", "labels.json", "cv.json")


@dataclass
class BundledRun:
    exp: str
    kind: str
    files: list[str] = field(default_factory=list)            # copied as they are, relative to the run folder
    checkpoints: list[str] = field(default_factory=list)      # re-saved with the weights only
    members: list[str] = field(default_factory=list)          # ensembles


def collect_runs(root: Path, exp: str, chain: tuple[str, ...] = ()) -> dict[str, BundledRun]:
    """exp and, for an ensemble, its members (recursively), each checked: trained, predicted, complete."""
    run_dir = Path(root) / exp
    where = f"ensemble member '{exp}' of '{chain[-1]}'" if chain else f"experiment '{exp}'"
    if not run_dir.is_dir():
        raise ConfigError(f"{where}: {run_dir} does not exist; run `make train EXP={exp}` (or make ensemble) first")
    for name in OWN_FILES:
        if not (run_dir / name).exists():
            raise ConfigError(f"{where}: {run_dir / name} does not exist; the run did not finish: re-run it")
    cfg = load(exp, [f"paths.outputs={root}"], base=run_dir / "config.yaml")
    paths = RunPaths(cfg)
    cv = read_cv(paths)
    kind = run_kind(paths, cv)
    if not paths.test_preds.exists():
        target = "ensemble NAME=" if kind == "ensemble" else "predict EXP="
        raise ConfigError(f"{where} has not been predicted ({paths.test_preds} does not exist); run "
                          f"`make {target}{exp}` first: the bundle predicts as that did")
    run = BundledRun(exp, kind, list(OWN_FILES))
    out = {}
    if kind == "ensemble":
        run.members = list(cfg.ensemble.members)
        if cv.get("method") == "stack":
            if not paths.meta_models.exists():
                raise ConfigError(f"{where}: {paths.meta_models} does not exist (a stack ensemble made before "
                                  f"it was saved); re-run make ensemble NAME={exp}")
            run.files.append(paths.meta_models.name)
        for m in run.members:
            if m in chain or m == exp:
                raise ConfigError(f"{where}: member '{m}' contains itself")
            out.update(collect_runs(root, m, chain + (exp,)))
    else:
        if not paths.predict_record.exists():
            raise ConfigError(f"{where}: {paths.predict_record} does not exist; re-run `make predict EXP={exp}`")
        run.files.append(paths.predict_record.name)
        run.checkpoints = [str(ckpt.relative_to(paths.dir)) for _, ckpt, _ in run_models(paths)]
        if paths.backbone.is_dir():
            run.files.append(paths.backbone.name)
    return {exp: run, **out}


def weights_only(src: Path, dst: Path, half: bool) -> None:
    """A checkpoint reduced to {"model": state dict}; with half, its floating tensors stored as fp16 (they are
    loaded back into the fp32 model, so predictions differ by the rounding only)."""
    state = torch.load(src, map_location="cpu", weights_only=True)["model"]
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, dst)


def copy_runs(root: Path, runs: dict[str, BundledRun], dest: Path, half: bool) -> None:
    for run in runs.values():
        src, dst = Path(root) / run.exp, dest / run.exp
        dst.mkdir(parents=True, exist_ok=True)
        for name in run.files:
            if (src / name).is_dir():
                shutil.copytree(src / name, dst / name)
            else:
                shutil.copyfile(src / name, dst / name)
        for rel in run.checkpoints:
            weights_only(src / rel, dst / rel, half)
