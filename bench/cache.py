"""data.cache measured: epoch time and loader throughput with large source images, none vs ram vs disk.

    OMP_NUM_THREADS=2 python bench/cache.py [--data ../shared/data/image_fmnist] [--rows 2000] [--side 512]
                                            [--size 96] [--epochs 2] [--repeats 2]
    make bench-cache

The shared Fashion-MNIST images (28 px) written out as `--side` px JPEGs (bench/runs/cache/data/, made once),
the first `--rows` train rows; a baked image project trains resnet18 from scratch at `--size` px on fold 0
(`make train`, the default 2 workers, no other change) with data.cache = none, ram and disk, interleaved and
repeated; the table shows the median seconds of each epoch (history.csv), the wall time of `make train`, and the
train loader alone (items / s over one epoch, no model). The disk cache is deleted before the first disk run, so
its first repeat pays the build and the later ones read the file. Whether the cached runs' OOF files are
byte-identical to the uncached one is printed too. Writes bench/results_cache.md.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from cookiecutter.main import cookiecutter
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_make  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO, RUNS = BENCH.parent, BENCH / "runs" / "cache"
MODES = ("none", "ram", "disk")


def big_jpegs(src: Path, rows: int, side: int) -> Path:
    out = RUNS / f"data_{side}"
    if (out / "sample_submission.csv").is_file():
        return out
    (out / "images").mkdir(parents=True, exist_ok=True)
    train, test = pd.read_csv(src / "train.csv").iloc[:rows], pd.read_csv(src / "test.csv").iloc[:rows // 4]
    for df in (train, test):
        for rel in df["image"]:
            img = Image.open(src / rel).convert("RGB").resize((side, side), Image.BICUBIC)
            img.save(out / Path(rel).with_suffix(".jpg"), quality=90)
        df["image"] = [str(Path(p).with_suffix(".jpg")) for p in df["image"]]
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    test.assign(label=0)[["id", "label"]].to_csv(out / "sample_submission.csv", index=False)
    return out


def bake(data: Path, size: int, epochs: int) -> Path:
    proj = RUNS / "tpl"
    shutil.rmtree(proj, ignore_errors=True)
    cookiecutter(str(REPO), no_input=True, output_dir=str(RUNS), extra_context=dict(
        project_slug=proj.name, task="image", problem="multiclass", n_folds="5", target_cols="label",
        image_col="image", image_size=str(size)))
    for mode in MODES:
        cfg = dict(data=dict(dir=str(data), cache=mode), model=dict(name="resnet18", pretrained=False),
                   train=dict(epochs=epochs, batch_size=64, folds=[0], progress=False), report=dict(auto=False))
        (proj / "configs" / f"c_{mode}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proj


def loader_rate(proj: Path, mode: str) -> float:
    """Items / s of one pass over fold 0's training loader (decode or cache, augment, collate), no model."""
    sys.path.insert(0, str(proj / "src"))
    pkg = lambda m: importlib.import_module(f"tpl.{m}")  # noqa: E731
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        cfg = pkg("core.config").load(f"c_{mode}")
        train = pd.read_csv(Path(cfg.data.dir) / "train.csv")
        fit = train.iloc[: int(len(train) * 0.8)]
        m = pkg("modality").get_modality(cfg)
        m.warm(train)
        import torch
        loader = m.loader(fit, train["label"].iloc[: len(fit)].astype("category").cat.codes.to_numpy(), True,
                          cfg.train.batch_size, generator=torch.Generator().manual_seed(0))
        t0, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["image"])
        return n / (time.perf_counter() - t0)
    finally:
        os.chdir(cwd)


def oof_hash(proj: Path, exp: str) -> str:
    return hashlib.sha256((proj / "outputs" / exp / "fold0" / "oof.csv").read_bytes()).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "image_fmnist"))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    data = big_jpegs(Path(args.data), args.rows, args.side)
    proj = bake(data, args.size, args.epochs)
    res = {m: dict(epochs=[[] for _ in range(args.epochs)], wall=[], rate=[], oof=set()) for m in MODES}
    for r in range(args.repeats):
        for mode in MODES:
            exp = f"c_{mode}"
            wall = run_make(proj, "train", f"EXP={exp}", "ARGS=overwrite=true")
            hist = pd.read_csv(proj / "outputs" / exp / "history.csv")
            for e in range(args.epochs):
                res[mode]["epochs"][e].append(float(hist["seconds"].iloc[e]))
            res[mode]["wall"].append(wall)
            res[mode]["oof"].add(oof_hash(proj, exp))
            res[mode]["rate"].append(loader_rate(proj, mode))
            print(mode, r, f"wall {wall:.1f}s", list(hist["seconds"]), f"{res[mode]['rate'][-1]:.0f} items/s",
                  flush=True)
    med = statistics.median
    base = med(res["none"]["wall"])
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    lines = ["# data.cache: large JPEGs, none vs ram vs disk (`bench/cache.py`)", "",
             f"{args.rows} Fashion-MNIST train rows written as {args.side} px JPEGs (quality 90), resnet18 from "
             f"scratch at {args.size} px, batch 64, fold 0 of 5 ({int(args.rows * 0.8)} training rows), "
             f"{args.epochs} epochs, the default 2 DataLoader workers, OMP_NUM_THREADS={threads}; medians of "
             f"{args.repeats} interleaved repeats.", "",
             "| data.cache | " + " | ".join(f"epoch {e + 1} s" for e in range(args.epochs)) +
             " | make train wall s | wall vs none | train loader alone, items/s | OOF sha256 |",
             "|---|" + "---|" * args.epochs + "---|---|---|---|"]
    for mode in MODES:
        m = res[mode]
        lines.append(f"| {mode} | " + " | ".join(f"{med(x):.1f}" for x in m["epochs"]) +
                     f" | {med(m['wall']):.1f} | {med(m['wall']) / base:.2f}x | {med(m['rate']):.0f} | "
                     f"{', '.join(sorted(m['oof']))} |")
    lines += ["", "make train wall includes the checks (every original image decoded once by data.check_inputs) "
              "and, with a cache, building it (ram: in every run; disk: in the first run only; the first disk repeat "
              "built it: " + ", ".join(f"{w:.1f}" for w in res["disk"]["wall"]) + " s)."]
    (BENCH / "results_cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
