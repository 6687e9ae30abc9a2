"""Benchmark the cookiecutter template end to end on two small real data sets (CPU, offline).

    . .venv/bin/activate
    python bench/run.py                  # image (Fashion-MNIST) + text (SST-2), full settings
    python bench/run.py --only image     # or: --only text
    python bench/run.py --quick          # smoke run: 400 train rows, 2 folds, 1 epoch
    python bench/run.py --data-root DIR  # holds image_fmnist/ and text_sst2/ (default <repo>/../shared/data)
    python bench/run.py --threads 1      # torch threads for training; 1 is far faster on a CPU shared with other jobs

For each task: bake a project into bench/runs/<slug>/ (wiped first), write configs/bench.yaml there
(data.dir = the shared data set, absolute), run `make all EXP=bench PYTHON=<this python>`, score
submissions/bench.csv against solution.csv, and fit a scikit-learn baseline on the same folds.
Prints a markdown table and writes it to bench/results.md (--quick: bench/runs/results_quick.md).
Exits 1 when a full run misses a target (test above baseline, |CV - test| <= 0.02).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from cookiecutter.main import cookiecutter
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RUNS = BENCH / "runs"
EXP = "bench"
MAX_GAP = 0.02


# Per task: data folder, cookiecutter answers, the experiment config (configs/bench.yaml), target.
TASKS = {
    "image": dict(
        data="image_fmnist", label="fmnist",
        bake=dict(task="image", problem="multiclass", metric="accuracy", target_cols="label",
                  image_col="image", image_size="32"),
        config=lambda: dict(
            model=dict(name="resnet10t", pretrained=False, drop_rate=0.1),
            train=dict(epochs=8, batch_size=64, lr=2e-3, weight_decay=0.05, warmup=0.1,
                       num_workers=0, progress=False),
            aug=dict(train=[dict(name="HorizontalFlip", p=0.5)])),
        target=0.83, baseline="LogReg on raw pixels"),
    "text": dict(
        data="text_sst2", label="sst2",
        bake=dict(task="text", problem="binary", metric="accuracy", target_cols="label",
                  text_cols="sentence", max_len="64"),
        config=lambda: dict(
            model=dict(name=minilm_dir(), pretrained=True, pooling="mean", drop_rate=0.1),
            train=dict(epochs=1, batch_size=16, lr=8e-5, weight_decay=0.01, warmup=0.1, progress=False)),
        target=0.76, baseline="TF-IDF + LogReg"),
}
QUICK = dict(rows=400, n_folds=2, epochs=1)


def bake(task: str, spec: dict, data_dir: Path, quick: bool) -> Path:
    slug = f"bench_{task}"
    proj = RUNS / slug
    shutil.rmtree(proj, ignore_errors=True)
    RUNS.mkdir(parents=True, exist_ok=True)
    cookiecutter(str(REPO), no_input=True, output_dir=str(RUNS),
                 extra_context=dict(project_slug=slug, n_folds="5", id_col="id", **spec["bake"]))
    cfg = spec["config"]()
    cfg["data"] = dict(dir=str(data_dir))
    if quick:  # a subset of train.csv's rows (the CSV only; images stay in data.dir)
        sub = pd.read_csv(data_dir / "train.csv").sample(QUICK["rows"], random_state=0)
        sub.to_csv(proj / "quick_train.csv", index=False)
        cfg["data"]["train_file"] = str(proj / "quick_train.csv")
        cfg["train"].update(n_folds=QUICK["n_folds"], epochs=QUICK["epochs"])
    (proj / "configs" / f"{EXP}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proj


def run_template(proj: Path, threads: int) -> float:
    t0 = time.time()
    cmd = ["make", "all", f"EXP={EXP}", f"PYTHON={sys.executable}"]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}))
    print(f"\n$ (cd {proj.relative_to(REPO)} && {' '.join(cmd)})", flush=True)
    subprocess.run(cmd, cwd=proj, check=True, env=env)
    return time.time() - t0


def score_template(proj: Path, solution: pd.DataFrame) -> dict:
    cv = json.loads((proj / "outputs" / EXP / "cv.json").read_text())
    sub = pd.read_csv(proj / "submissions" / f"{EXP}.csv", dtype={"id": str})
    sol = solution.merge(sub, on="id", suffixes=("", "_pred"), validate="1:1")
    assert len(sol) == len(solution), "submission ids differ from solution.csv"
    out = dict(cv=cv["cv"], test=accuracy_score(sol["label"], sol["label_pred"]))
    preds = pd.read_csv(proj / "outputs" / EXP / "test_preds.csv", dtype={"id": str})
    if list(preds.columns) == ["id", "0", "1"]:  # binary: P(label 1) exists even though we submit labels
        p = solution.merge(preds, on="id")
        out["auc"] = roc_auc_score(p["label"], p["1"])
    return out


def folds_of(proj: Path, ids: pd.Series) -> np.ndarray:
    """The template's own fold assignment, so the baseline's CV uses identical splits."""
    (path,) = (proj / "folds").rglob("*.csv")
    f = pd.read_csv(path, dtype={"id": str}).set_index("id")["fold"]
    return f.loc[ids].to_numpy()


def image_features(data_dir: Path, df: pd.DataFrame) -> np.ndarray:
    return np.stack([np.asarray(Image.open(data_dir / p).convert("L"), dtype=np.float32).ravel() / 255.0
                     for p in df["image"]])


def baseline(task: str, data_dir: Path, train: pd.DataFrame, test: pd.DataFrame, folds: np.ndarray) -> dict:
    t0 = time.time()
    if task == "image":
        X, Xt = image_features(data_dir, train), image_features(data_dir, test)
        make = lambda: LogisticRegression(C=0.1, max_iter=300)  # noqa: E731
    else:
        X, Xt = train["sentence"].to_numpy(), test["sentence"].to_numpy()
        make = lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),  # noqa: E731
                                     LogisticRegression(C=4.0, max_iter=1000))
    y = train["label"].to_numpy()
    oof = np.zeros(len(y), dtype=y.dtype)
    for k in np.unique(folds):
        tr, va = folds != k, folds == k
        oof[va] = make().fit(X[tr], y[tr]).predict(X[va])
    pred = make().fit(X, y).predict(Xt)
    return dict(cv=accuracy_score(y, oof), test=accuracy_score(test["label"], pred), wall=time.time() - t0)


def bench_task(task: str, data_root: Path, quick: bool, threads: int) -> list[dict]:
    spec = TASKS[task]
    data_dir = (data_root / spec["data"]).resolve()
    proj = bake(task, spec, data_dir, quick)
    wall = run_template(proj, threads)
    solution = pd.read_csv(data_dir / "solution.csv", dtype={"id": str})
    test = pd.read_csv(data_dir / "test.csv", dtype={"id": str}).merge(solution, on="id")
    cfg = yaml.safe_load((proj / "outputs" / EXP / "config.yaml").read_text())
    train = pd.read_csv(Path(cfg["data"]["dir"]) / cfg["data"]["train_file"], dtype={"id": str})
    model = "all-MiniLM-L6-v2 (local)" if task == "text" else cfg["model"]["name"]
    tmpl = dict(data=spec["label"], model=f"template: {model}", wall=wall, target=spec["target"],
                **score_template(proj, solution))
    base = dict(data=spec["label"], model=f"baseline: {spec['baseline']}",
                **baseline(task, data_dir, train, test, folds_of(proj, train["id"])))
    return [tmpl, base]


def table(rows: list[dict]) -> str:
    lines = ["| data set | model | CV | test | \\|CV-test\\| | wall time (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['model']} | {r['cv']:.4f} | {r['test']:.4f} | "
                     f"{abs(r['cv'] - r['test']):.4f} | {r['wall']:.1f} |")
    return "\n".join(lines)


def checks(rows: list[dict]) -> list[tuple[str, bool]]:
    out = []
    for t in (r for r in rows if "target" in r):
        out.append((f"{t['data']}: template test {t['test']:.4f} > {t['target']}", t["test"] > t["target"]))
        out.append((f"{t['data']}: |CV - test| {abs(t['cv'] - t['test']):.4f} <= {MAX_GAP}",
                    abs(t["cv"] - t["test"]) <= MAX_GAP))
        if "auc" in t:
            out.append((f"{t['data']}: template test ROC-AUC (test_preds.csv, P(1)) {t['auc']:.4f}", True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(TASKS))
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--quick", action="store_true", help="smoke run: few rows, 2 folds, 1 epoch")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for the template runs (OMP_NUM_THREADS); 0 = torch's default (all cores)")
    args = ap.parse_args()
    rows = []
    for task in [args.only] if args.only else list(TASKS):
        rows += bench_task(task, args.data_root, args.quick, args.threads)
    md = table(rows)
    notes = checks(rows)
    text = (f"# Template benchmark{' (--quick smoke run)' if args.quick else ''}\n\n"
            f"`python bench/run.py{' --quick' if args.quick else ''}{' --only ' + args.only if args.only else ''}`"
            f", {time.strftime('%Y-%m-%d %H:%M')}\n\n{md}\n\n"
            + "\n".join(f"- [{'x' if ok else ' '}] {msg}" for msg, ok in notes) + "\n")
    print("\n" + text)
    (RUNS / "results_quick.md" if args.quick else BENCH / "results.md").write_text(text)
    return 0 if args.quick or all(ok for _, ok in notes) else 1


if __name__ == "__main__":
    sys.exit(main())
