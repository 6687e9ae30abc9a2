"""Each default of the baked project against the value it replaced: one lever changed at a time, on the
regimes of bench/defaults.py, fold 0 of 5 (a fold's validation score, and that fold model's test accuracy).

    python bench/levers.py [--regimes image_scratch,image_pretrained,text] [--jobs 2]
    make bench-levers

Every variant is today's defaults plus the overrides in its row (`defaults` = none). With --jobs 2 two
variants train at once, one thread each: the scores are what is compared here, not the seconds. One fold
is a quick, noisy look (validation s.e. about 0.014 on 800 rows, test s.e. about 0.011 on 1000): the
5-fold, full-budget comparison with the peers is bench/defaults.py's. Writes bench/results_levers.md.
"""
from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults import BENCH, bake, lite0_weights, regimes, run_template  # noqa: E402

# (label, the lever it measures, overrides on top of the defaults, as ARGS of make train)
VARIANTS = {
    "image_scratch": [
        ("defaults", "", ""),
        ("aug.preset=none", "augmentation preset", "aug.preset=none"),
        ("aug.preset=medium (flips)", "augmentation preset", "aug.preset=medium"),
        ("label smoothing 0", "label smoothing", "loss.label_smoothing=0"),
    ],
    "image_pretrained": [
        ("defaults", "", ""),
        ("lr 1e-3 (the old default)", "pretrained lr", "train.lr=1e-3"),
        ("lr 5e-4 (lower for pretrained)", "pretrained lr", "train.lr=5e-4"),
        ("aug.preset=none", "augmentation preset", "aug.preset=none"),
        ("aug.preset=medium (flips)", "augmentation preset", "aug.preset=medium"),
        ("label smoothing 0", "label smoothing", "loss.label_smoothing=0"),
        ("EMA on", "EMA", "ema.enabled=true"),
    ],
    "text": [
        ("defaults", "", ""),
        ("lr 2e-5 (the old default)", "pretrained lr", "train.lr=2e-5"),
        ("label smoothing 0", "label smoothing", "loss.label_smoothing=0"),
        ("EMA on", "EMA", "ema.enabled=true"),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(BENCH.parent.parent / "shared" / "data"))
    ap.add_argument("--regimes", default="image_scratch,image_pretrained,text")
    ap.add_argument("--epochs", default="image_scratch=6,image_pretrained=2,text=1")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    epochs = {k: int(v) for k, v in (kv.split("=") for kv in args.epochs.split(","))}
    threads = "1" if args.jobs > 1 else "2"
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    table = regimes(Path(args.data_root), epochs)
    lines = ["| regime | variant | lever | fold-0 validation | fold-0 model on test | vs defaults (test) |",
             "|---|---|---|---|---|---|"]
    for name in args.regimes.split(","):
        r = dict(table[name])
        if r.get("weights") == "lite0":
            r["weights"] = lite0_weights()
        proj = bake(f"levers_{name}", r)
        variants = VARIANTS[name]

        def one(i: int) -> dict:
            label, _, overrides = variants[i]
            return run_template(proj, r, env, exp=f"v{i}", args=" ".join(["train.folds=[0]", overrides]).strip())
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one, range(len(variants))))
        base = results[0]["test"]
        for (label, lever, _), res in zip(variants, results):
            se = math.sqrt(res["test"] * (1 - res["test"]) / res["n"])
            delta = "" if label == "defaults" else f"{res['test'] - base:+.4f}"
            lines.append(f"| {name} ({r['epochs']} ep) | {label} | {lever or '-'} | {res['cv']:.4f} | "
                         f"{res['test']:.4f} (s.e. {se:.4f}) | {delta} |")
            print(lines[-1], flush=True)
    text = ("# Levers, one at a time (`bench/levers.py`)\n\nFold 0 of 5 of the baked project with today's "
            "defaults, and with one default set back or changed. Command: `python bench/levers.py " +
            " ".join(sys.argv[1:]) + "`\n\n" + "\n".join(lines) + "\n")
    (BENCH / "results_levers.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
