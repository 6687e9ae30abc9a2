"""Endgame benchmark: members, a pseudo-label round and every ensemble method, CV next to test score.

    python bench/endgame.py [--set image_fmnist] [--epochs 4] [--members r10_s42,r10_s7,r14]
    python bench/endgame.py --quick          # 2 folds of 5, 1 epoch: a smoke run

Bakes one project into bench/runs/endgame/, trains each member with `make train predict` on the shared
data set's 5 folds, runs `make pseudo` on the first member, `make ensemble` with every method over the
k-fold members, and `make submit` for all; scores each submission against solution.csv. The table
shows the CV (for ensembles: the out-of-fold CV, whose weights / meta-model never saw the rows they
score, and the in-sample CV for comparison) beside the test score. Writes bench/results_endgame.md.
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
from common import run_make as make  # noqa: E402
from demo import bake  # noqa: E402

HERE = Path(__file__).resolve().parent
SETS = {
    "image_fmnist": dict(
        answers=dict(task="image", problem="multiclass", metric="accuracy", target_cols="label", image_size="32"),
        base=["model.pretrained=false", "train.batch_size=64", "train.lr=2e-3", "train.weight_decay=0.05",
              "train.num_workers=0"],
        yaml="aug:\n  train:\n    - {name: HorizontalFlip, p: 0.5}\n",  # lists with spaces: a config file
        members={"r10_s42": ["model.name=resnet10t", "seed=42"],
                 "r10_s7": ["model.name=resnet10t", "seed=7"],
                 "r14": ["model.name=resnet14t", "seed=42"]}),
}
METHODS = ("mean", "weighted", "hill", "rank", "gmean", "stack")


def test_score(project: Path, exp: str, solution: pd.DataFrame) -> float:
    sub = pd.read_csv(project / "submissions" / f"{exp}.csv", dtype={"id": str})
    return accuracy_score(solution.set_index("id").loc[sub["id"], "label"].astype(str), sub["label"].astype(str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=list(SETS), default="image_fmnist")
    ap.add_argument("--data-root", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--members", help="comma-separated member names (default: all)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep the baked project and members already predicted")
    args = ap.parse_args()
    spec = SETS[args.set]
    data = Path(args.data_root).resolve() / args.set
    out = HERE / "runs" / "endgame"
    out.mkdir(parents=True, exist_ok=True)
    project = out / f"endgame_{args.set}"
    if not (args.reuse and project.exists()):
        project = bake(out, f"endgame_{args.set}", spec["answers"])
    epochs = 1 if args.quick else args.epochs
    common = [f"data.dir={data}", f"train.epochs={epochs}", "train.progress=false", "overwrite=true", *spec["base"]]
    if args.quick:
        common.append("train.folds=[0,1]")
    members = {k: v for k, v in spec["members"].items() if not args.members or k in args.members.split(",")}
    solution = pd.read_csv(data / "solution.csv", dtype={"id": str})
    rows = []

    def record(exp: str, kind: str, seconds: float) -> None:
        cv = json.loads((project / "outputs" / exp / "cv.json").read_text())
        make(project, "submit", f"EXP={exp}")
        rows.append(dict(exp=exp, kind=kind, cv=cv["cv"], cv_in_sample=cv.get("cv_in_sample"),
                         test=test_score(project, exp, solution), seconds=seconds))
        r = rows[-1]
        print(f"{exp}: cv {r['cv']:.4f} test {r['test']:.4f} ({seconds:.0f}s)", flush=True)

    for name, extra in members.items():
        t0 = time.time()
        done = project / "outputs" / name / "test_preds.csv"
        if args.reuse and done.exists():
            wall = json.loads((done.parent / "cv.json").read_text())["wall_seconds"]
            record(name, "member: " + " ".join(extra) + " (reused)", wall)
            continue
        (project / "configs" / f"{name}.yaml").write_text(spec.get("yaml", ""))
        overrides = "ARGS=" + " ".join([*common, *extra])
        make(project, "train", f"EXP={name}", overrides)
        make(project, "predict", f"EXP={name}", overrides)
        record(name, "member: " + " ".join(extra), time.time() - t0)
    first = next(iter(members))
    t0 = time.time()
    make(project, "pseudo", f"EXP={first}", f"NAME={first}_pseudo",
         "ARGS=overwrite=true pseudo.threshold=0.9 train.progress=false")
    record(f"{first}_pseudo", f"pseudo round on {first} (hard labels, p >= 0.9)", time.time() - t0)
    exps = " ".join(members)
    for method in METHODS:
        t0 = time.time()
        make(project, "ensemble", f"EXPS={exps}", f"NAME=ens_{method}", f"ARGS=ensemble.method={method} overwrite=true")
        record(f"ens_{method}", f"ensemble ({method}) of {len(members)}", time.time() - t0)

    folds = "folds 0,1 of 5" if args.quick else "5 folds"
    lines = ["# Endgame benchmark\n", f"`python bench/endgame.py {' '.join(sys.argv[1:])}`, {args.set}, {folds}, "
             f"{epochs} epochs, accuracy, {time.strftime('%Y-%m-%d %H:%M')}\n",
             "| experiment | what | CV (out-of-fold) | CV in-sample | test | wall s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        ins = f"{r['cv_in_sample']:.4f}" if r["cv_in_sample"] is not None else ""
        lines.append(f"| {r['exp']} | {r['kind']} | {r['cv']:.4f} | {ins} | {r['test']:.4f} | {r['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (HERE / ("runs/results_endgame_quick.md" if args.quick else "results_endgame.md")).write_text(text)


if __name__ == "__main__":
    main()
