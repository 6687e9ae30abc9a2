"""The offline demo: bake an image and a text project and run the whole pipeline in each.

    make demo                                  # at the template root; sets up .venv first
    python bench/demo.py [--out scratch/demo] [--only image|text]

Image: scikit-learn's bundled digits written out as PNG files, a tiny timm CNN at 32 px.
Text: a generated corpus and a tiny BERT built locally (WordPiece tokenizer trained with `tokenizers`,
random weights). Nothing is downloaded. Each baked project runs `make demo`, i.e.
demo-data -> folds -> train -> predict -> submit, and the script prints where the submissions are.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = {"image": dict(task="image", problem="multiclass"), "text": dict(task="text", problem="binary")}


def bake(out: Path, name: str, answers: dict) -> Path:
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    cookiecutter(str(ROOT), no_input=True, output_dir=str(out), extra_context={"project_slug": name, **answers})
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="scratch/demo")
    ap.add_argument("--only", choices=list(PROJECTS))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = []
    for task, answers in PROJECTS.items():
        if args.only and task != args.only:
            continue
        t0 = time.time()
        project = bake(out, f"demo_{task}", answers)
        print(f"== {task}: baked {project}", flush=True)
        subprocess.run(["make", "demo", f"PYTHON={sys.executable}"], cwd=project, env=env, check=True)
        sub = project / "submissions" / "demo.csv"
        cv = (project / "outputs" / "demo" / "cv.json").read_text().replace("\n", " ")
        done.append((task, sub, cv, time.time() - t0))
    print("\nDemo finished:")
    for task, sub, cv, secs in done:
        print(f"  {task:5s} submission: {sub}  ({secs:.0f}s)\n        cv.json: {' '.join(cv.split())}")


if __name__ == "__main__":
    main()
