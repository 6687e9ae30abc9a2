"""NPROC=2 against NPROC=1 on a real data set: the same experiment, the same optimiser steps, the CV within
the fold-to-fold spread, and the wall time per epoch.

    python bench/nproc.py [--data-root ../shared/data] [--epochs 3] [--folds 0,1] [--batch 64]
    make bench-nproc

Bakes an image project into bench/runs/nproc_image/, trains resnet18 from scratch at 32 px on the shared
Fashion-MNIST subset (no augmentation, seed 42, the given folds of 5) once with one process and once with
`make train NPROC=2` (DDP over gloo), each process with one thread, the same `train.batch_size` (the global
batch) for both. Prints per fold the best score, the optimiser steps per epoch (train rows of the fold //
batch), whether the lr of every epoch is equal (it is only if the step counts are), the mean wall seconds
per epoch, and writes bench/results_nproc.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from cookiecutter.main import cookiecutter

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def bake(data_dir: Path, args) -> Path:
    proj = BENCH / "runs" / "nproc_image"
    shutil.rmtree(proj, ignore_errors=True)
    cookiecutter(str(REPO), no_input=True, output_dir=str(proj.parent),
                 extra_context=dict(project_slug=proj.name, task="image", problem="multiclass", metric="accuracy",
                                    target_cols="label", image_col="image", image_size="32", n_folds="5"))
    cfg = dict(data=dict(dir=str(data_dir)), model=dict(name="resnet18", pretrained=False),
               train=dict(epochs=args.epochs, batch_size=args.batch, lr=2e-3, folds=args.folds, num_workers=0,
                          progress=False), aug=dict(train=[]))
    for exp in ("one", "two"):
        (proj / "configs" / f"{exp}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proj


def train(proj: Path, exp: str, nproc: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = ["make", "train", f"EXP={exp}", f"NPROC={nproc}", f"PYTHON={sys.executable}"]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    done = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return time.time() - t0


def summary(proj: Path, exp: str, wall: float) -> dict:
    run = proj / "outputs" / exp
    cv = json.loads((run / "cv.json").read_text())
    hist = pd.read_csv(run / "history.csv")
    folds = pd.read_csv(run / "folds.csv")
    steps = {k: int((folds["fold"] != k).sum()) // cv["batch_size_per_process"] // cv["processes"]
             for k in cv["folds_run"]}
    return dict(cv=cv["cv"], folds=dict(zip(cv["folds_run"], cv["folds"])), steps=steps, lrs=hist["lr"].tolist(),
                epoch_s=statistics.mean(hist["seconds"]), wall=wall, processes=cv["processes"],
                per_process=cv["batch_size_per_process"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    args.folds = [int(k) for k in args.folds.split(",")]
    proj = bake(Path(args.data_root).resolve() / "image_fmnist", args)
    res = {exp: summary(proj, exp, train(proj, exp, n)) for exp, n in (("one", 1), ("two", 2))}
    one, two = res["one"], res["two"]
    spread = max(one["folds"].values()) - min(one["folds"].values())
    lines = [f"# NPROC=2 vs NPROC=1: resnet18 from scratch, 32 px, Fashion-MNIST subset, folds {args.folds} of 5, "
             f"{args.epochs} epochs, train.batch_size={args.batch} (global), 1 thread per process, CPU", "",
             "| run | processes x batch | CV accuracy | per fold | optimiser steps / epoch | s / epoch | make train s |",
             "|---|---|---:|---|---|---:|---:|"]
    for name, r in (("NPROC=1", one), ("NPROC=2", two)):
        folds = ", ".join(f"{k}: {s:.4f}" for k, s in r["folds"].items())
        steps = ", ".join(f"{k}: {s}" for k, s in r["steps"].items())
        lines.append(f"| {name} | {r['processes']} x {r['per_process']} | {r['cv']:.4f} | {folds} | {steps} | "
                     f"{r['epoch_s']:.1f} | {r['wall']:.0f} |")
    lines += ["", f"CV difference {two['cv'] - one['cv']:+.4f}; fold-to-fold spread of NPROC=1 {spread:.4f} "
                  f"({'inside' if abs(two['cv'] - one['cv']) <= spread else 'outside'} it). The lr after every epoch "
                  f"is {'identical' if one['lrs'] == two['lrs'] else 'DIFFERENT'} in both runs; epoch time ratio "
                  f"NPROC=2 / NPROC=1 = {two['epoch_s'] / one['epoch_s']:.2f}."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (BENCH / "results_nproc.md").write_text(text)


if __name__ == "__main__":
    main()
