"""Code-competition bundles on the shared data sets: bundle size with fp32 and fp16 weights, the largest test
prediction difference fp16 vs fp32, the rehearsal's wall time, and projected vs actual inference time on
the full test.csv.

    python bench/package.py [--data-root ../shared/data] [--folds 0,1] [--epochs 1]
    make bench-package

Bakes an image project (resnet18 from scratch at 32 px on image_fmnist) and a text project (the offline
all-MiniLM-L6-v2, max_len 128, on text_sst2) into bench/runs/package_<task>/, trains the given folds of 5,
predicts (image: views identity + hflip; text: identity), submits, then `make package` twice (fp32 and
package.half=true) and `make package-test` on each. Writes bench/results_package.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml
from cookiecutter.main import cookiecutter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import minilm_dir, run_make  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def bake(task: str, data_dir: Path, args) -> tuple[Path, str]:
    proj = BENCH / "runs" / f"package_{task}"
    shutil.rmtree(proj, ignore_errors=True)
    ctx = dict(project_slug=proj.name, task=task, n_folds="5", metric="accuracy")
    if task == "image":
        ctx.update(problem="multiclass", target_cols="label", image_col="image", image_size="32")
        cfg = dict(model=dict(name="resnet18", pretrained=False), aug=dict(train=[]))
        views = "[identity,hflip]"
    else:
        ctx.update(problem="binary", target_cols="label", text_cols="sentence", max_len="128")
        cfg = dict(model=dict(name=minilm_dir()))
        views = "[identity]"
    cookiecutter(str(REPO), no_input=True, output_dir=str(proj.parent), extra_context=ctx)
    cfg.update(data=dict(dir=str(data_dir)),
               train=dict(epochs=args.epochs, folds=args.folds, num_workers=0, progress=False))
    (proj / "configs" / "bench.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proj, views


def measure(task: str, data_dir: Path, args) -> dict:
    proj, views = bake(task, data_dir, args)
    run_make(proj, "train", "EXP=bench")
    run_make(proj, "predict", "EXP=bench", f"ARGS=tta.views={views}")
    run_make(proj, "submit", "EXP=bench")
    row = {"task": task}
    for name, half in (("fp32", "false"), ("fp16", "true")):
        run_make(proj, "package", "EXP=bench", f"NAME={name}", f"ARGS=package.half={half}")
        manifest = json.loads((proj / "packages" / name / "MANIFEST.json").read_text())
        rehearsal_wall = run_make(proj, "package-test", f"NAME={name}")
        result = json.loads((proj / "packages" / f"{name}.rehearsal.json").read_text())
        row[name] = {"bundle_mb": manifest["total_bytes"] / 1e6, "files": len(manifest["files"]),
                     "make_package_test_s": rehearsal_wall, **result}
    return row


def write(rows: list[dict], args) -> str:
    lines = [f"# Code-competition bundles (`bench/package.py`, folds {args.folds} of 5, {args.epochs} epoch(s))", "",
             "| task | weights | bundle MB | files | identical to make submit | max abs pred diff vs fp32 | "
             "make package-test s | inference.py s | projected s | projected / actual |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name in ("fp32", "fp16"):
            r = row[name]
            lines.append(f"| {row['task']} | {name} | {r['bundle_mb']:.1f} | {r['files']} | "
                         f"{r['identical_to_make_submit']} | {r['max_abs_pred_diff']:.2e} | "
                         f"{r['make_package_test_s']:.1f} | {r['inference_seconds']:.1f} | "
                         f"{r['projected_seconds']:.1f} | {r['projected_over_actual']:.2f} |")
    rows_n = rows[0]["fp32"]["rows"]
    lines += ["", f"Test rows: {rows_n} (the full test.csv). inference.py s: the notebook's whole run in the "
              "rehearsal (pip install of the wheels, imports, every fold and view, the submission); "
              "projected: make package's projection for the same rows on the same machine."]
    text = "\n".join(lines) + "\n"
    (BENCH / "results_package.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    args.folds = [int(k) for k in args.folds.split(",")]
    root = Path(args.data_root)
    rows = [measure("image", root / "image_fmnist", args), measure("text", root / "text_sst2", args)]
    print(write(rows, args))
    pd.DataFrame([{"task": r["task"], **{f"{n}_{k}": v for n in ("fp32", "fp16") for k, v in r[n].items()
                                          if not isinstance(v, dict)}} for r in rows]).to_csv(
        BENCH / "runs" / "package.csv", index=False)


if __name__ == "__main__":
    main()
