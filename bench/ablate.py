"""Ablation: a baseline and baseline + each trick, same folds and seed, CV and test-score deltas.

    python bench/ablate.py --set image_fmnist [--folds 0,1] [--epochs 4]
    python bench/ablate.py --set text_sst2 [--folds 0] [--epochs 2]
    make bench-ablate

Bakes one project per data set into bench/runs/ablate/, runs `make train predict submit` for every
variant with the shared folds, scores the submission against the set's solution.csv, and prints a
markdown table: variant, CV (on the folds run), test score, and both deltas to the baseline. With few
folds and epochs on CPU the deltas are small-sample numbers: read them with the fold spread.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir, run_make  # noqa: E402
from demo import bake  # noqa: E402

HERE = Path(__file__).resolve().parent
SETS = {
    "image_fmnist": dict(
        answers=dict(task="image", problem="multiclass", metric="accuracy", target_cols="label", image_size="32"),
        base=["model.name=resnet10t", "model.pretrained=false", "train.lr=2e-3", "train.batch_size=64", "train.num_workers=0",
              "aug.train=[]"],
        variants={"EMA": ["ema.enabled=true", "ema.decay=0.998"],
                  "mixup": ["aug.mixup_alpha=0.2"],
                  "label smoothing": ["loss.label_smoothing=0.1"]}),
    "text_sst2": dict(
        answers=dict(task="text", problem="binary", metric="accuracy", target_cols="label", text_cols="sentence",
                     max_len="64"),
        base=["model.pretrained=true", "train.lr=5e-5", "train.batch_size=32", "train.warmup=0.1"],
        variants={"FGM": ["adv.method=fgm", "adv.start_epoch=1"],
                  "AWP": ["adv.method=awp", "adv.start_epoch=2"],
                  "EMA": ["ema.enabled=true", "ema.decay=0.99"],
                  "R-Drop": ["rdrop.alpha=1.0"],
                  "LLRD": ["optim.llrd=0.85", "optim.head_lr=5e-4"]}),
}



def make(project: Path, target: str, exp: str, args: list[str]) -> None:
    run_make(project, target, f"EXP={exp}", "ARGS=" + " ".join(args))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=list(SETS), required=True)
    ap.add_argument("--data-root", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--folds", default="0,1", help="folds to train (of 5)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--only", help="comma-separated variant names (baseline always runs)")
    args = ap.parse_args()
    spec = SETS[args.set]
    data = Path(args.data_root).resolve() / args.set
    out = HERE / "runs" / "ablate"
    out.mkdir(parents=True, exist_ok=True)
    project = bake(out, f"ablate_{args.set}", spec["answers"])
    base = [f"data.dir={data}", f"train.folds=[{args.folds}]", f"train.epochs={args.epochs}", "train.progress=false",
            "overwrite=true", *spec["base"]]
    if spec["answers"]["task"] == "text":
        base.append(f"model.name={minilm_dir()}")
    variants = {"baseline": []} | {k: v for k, v in spec["variants"].items()
                                   if not args.only or k in args.only.split(",")}
    solution = pd.read_csv(data / "solution.csv", dtype={"id": str})
    rows = []
    for name, extra in variants.items():
        exp = "v_" + name.lower().replace(" ", "_").replace("-", "")
        t0 = time.time()
        for target in ("train", "predict", "submit"):
            make(project, target, exp, base + extra)
        cv = json.loads((project / "outputs" / exp / "cv.json").read_text())
        sub = pd.read_csv(project / "submissions" / f"{exp}.csv", dtype={"id": str})
        test = accuracy_score(solution.set_index("id").loc[sub["id"], "label"].astype(str), sub["label"].astype(str))
        rows.append(dict(variant=name, overrides=" ".join(extra), cv=cv["cv"], folds=cv["folds"], test=test,
                         seconds=time.time() - t0))
        print(f"{name}: cv {cv['cv']:.4f} folds {[round(f, 4) for f in cv['folds']]} test {test:.4f} "
              f"({rows[-1]['seconds']:.0f}s)", flush=True)
    b = rows[0]
    print(f"\nAblation on {args.set}: folds [{args.folds}] of 5, {args.epochs} epochs, seed 42, accuracy\n")
    print("| variant | overrides | CV | ΔCV | test | Δtest | fold scores | wall s |\n|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['variant']} | `{r['overrides']}` | {r['cv']:.4f} | {r['cv'] - b['cv']:+.4f} | {r['test']:.4f} | "
              f"{r['test'] - b['test']:+.4f} | {', '.join(f'{f:.4f}' for f in r['folds'])} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
