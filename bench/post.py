"""post.method measured: the CV without post-processing, the in-sample post-processed CV (parameters fitted on
the same OOF rows they are scored on) and the out-of-fold one (cv.json cv_post), side by side with the test score.

    OMP_NUM_THREADS=2 python bench/post.py [--data ../shared/data/image_fmnist] [--epochs 3]

Two sets derived from image_fmnist (answer keys derived the same way from its solution.csv; the images are the
shared folder's, linked, never copied):
  shirt   binary, scored by F1: is the garment a shirt (class 6, 10% of the rows, the class most confused)?
          post.method=threshold
  ink     regression scored by qwk: the image's ink (mean pixel value) binned into grades 0-5 at the train
          set's sextiles; post.method=rounder
Each: a project baked with the problem and metric, resnet18 from scratch at 32 px, 5 folds, `make folds train
predict` with post.method, then the test score of test_preds.csv (plain) and test_post.csv (post-processed).
Writes bench/results_post.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from cookiecutter.main import cookiecutter
from PIL import Image
from sklearn.metrics import cohen_kappa_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_make  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO, RUNS = BENCH.parent, BENCH / "runs" / "post"
SETS = {"shirt": dict(problem="binary", metric="f1", method="threshold"),
        "ink": dict(problem="regression", metric="qwk", method="rounder")}


def derive(src: Path, name: str) -> Path:
    """bench/runs/post/data_<name>/: train / test / sample_submission / solution CSVs with the derived target."""
    out = RUNS / f"data_{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "images").symlink_to((src / "images").resolve())
    train, test = pd.read_csv(src / "train.csv"), pd.read_csv(src / "test.csv")
    sol = pd.read_csv(src / "solution.csv").set_index("id").loc[test["id"]].reset_index()
    if name == "shirt":
        train["target"], sol["target"] = (train["label"] == 6).astype(int), (sol["label"] == 6).astype(int)
    else:
        ink = lambda df: np.array([np.asarray(Image.open(src / p)).mean() for p in df["image"]])  # noqa: E731
        cuts = np.quantile(ink(train), np.linspace(0, 1, 7)[1:-1])
        train["target"] = np.searchsorted(cuts, ink(train)).astype(float)
        sol["target"] = np.searchsorted(cuts, ink(test)).astype(float)
    train[["id", "image", "target"]].to_csv(out / "train.csv", index=False)
    test[["id", "image"]].to_csv(out / "test.csv", index=False)
    sol[["id", "target"]].to_csv(out / "solution.csv", index=False)
    sol.assign(target=0)[["id", "target"]].to_csv(out / "sample_submission.csv", index=False)
    return out


def bake(name: str, data: Path, epochs: int) -> Path:
    spec = SETS[name]
    proj = RUNS / f"tpl_{name}"
    shutil.rmtree(proj, ignore_errors=True)
    cookiecutter(str(REPO), no_input=True, output_dir=str(RUNS), extra_context=dict(
        project_slug=proj.name, task="image", problem=spec["problem"], metric=spec["metric"], n_folds="5",
        target_cols="target", image_col="image", image_size="32"))
    base = dict(data=dict(dir=str(data)), model=dict(name="resnet18", pretrained=False),
                train=dict(epochs=epochs, batch_size=64, progress=False), report=dict(auto=False))
    (proj / "configs" / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    return proj


def test_score(name: str, proj: Path, data: Path, file: str) -> float:
    preds = pd.read_csv(proj / "outputs" / "base" / file, dtype={"id": str}).set_index("id")
    sol = pd.read_csv(data / "solution.csv", dtype={"id": str}).set_index("id")
    preds = preds.loc[sol.index]
    if name == "shirt":
        return float(f1_score(sol["target"], preds.to_numpy().argmax(1)))
    lo, hi = sol["target"].min(), sol["target"].max()
    grades = np.clip(np.rint(preds.iloc[:, 0].to_numpy()), lo, hi).astype(int)
    return float(cohen_kappa_score(sol["target"].astype(int), grades, weights="quadratic"))


def measure(name: str, src: Path, epochs: int) -> dict:
    data = derive(src, name)
    proj = bake(name, data, epochs)
    method = SETS[name]["method"]
    t0 = time.time()
    for target, extra in (("folds", []), ("train", []), ("predict", [f"ARGS=post.method={method}"])):
        run_make(proj, target, "EXP=base", *extra)
    cv = json.loads((proj / "outputs" / "base" / "cv.json").read_text())
    post = json.loads((proj / "outputs" / "base" / "post.json").read_text())
    return dict(set=name, **SETS[name], cv=cv["cv"], in_sample=cv["cv_post_in_sample"], oof=cv["cv_post"],
                fold_spread=float(np.std(cv["folds"])), fold_spread_post=float(np.std(cv["folds_post"])),
                test=test_score(name, proj, data, "test_preds.csv"),
                test_post=test_score(name, proj, data, "test_post.csv"), params=post["params"],
                seconds=time.time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "image_fmnist"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--sets", default="shirt,ink")
    args = ap.parse_args()
    rows = [measure(n, Path(args.data), args.epochs) for n in args.sets.split(",")]
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    lines = ["# post.method: in-sample vs out-of-fold post-processed CV (`bench/post.py`)", "",
             f"Sets derived from image_fmnist (see the script's docstring); resnet18 from scratch at 32 px, "
             f"{args.epochs} epochs, batch 64, 5 folds, OMP_NUM_THREADS={threads}. Test: the 1000-row test set, "
             f"the mean of the 5 fold models; `test_post` uses the parameters fitted on all OOF rows.", "",
             "| set | problem | metric | post.method | cv | cv_post in-sample | cv_post out of fold | fold spread "
             "(sd) plain / post | test plain | test post | fitted on all OOF | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = json.dumps(r["params"], separators=(",", ":"))
        params = params if len(params) < 120 else params[:117] + "..."
        lines.append(f"| {r['set']} | {r['problem']} | {r['metric']} | {r['method']} | {r['cv']:.4f} | "
                     f"{r['in_sample']:.4f} | {r['oof']:.4f} | {r['fold_spread']:.4f} / {r['fold_spread_post']:.4f} | "
                     f"{r['test']:.4f} | {r['test_post']:.4f} | `{params}` | {r['seconds']:.0f} |")
    lines += ["", "cv and test plain: argmax / plain rounding of the same predictions. In-sample: the parameters fitted "
              "on all OOF rows and scored on them; out of fold: each fold scored with parameters fitted on the other "
              "four (what cv.json `cv_post` holds). seconds: folds + train + predict, wall time on a 2-core machine "
              "that other jobs shared."]
    (BENCH / "results_post.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
