"""Behaviour unchanged, proved: the same commands on the demo data give byte-identical files.

    python bench/identity.py --before 7d2859d              # template at that commit vs the working tree
    python bench/identity.py --before A --after B          # two commits
    python bench/identity.py --before A --only text --keep # one modality; keep the scratch projects

For each modality the script bakes a project from each side (git archive of a commit, or the working
tree), writes the offline demo data once (make demo-data on the "before" side, copied to the other: the
same input for both) and runs the same stages on it (folds, train, predict, submit; TTA'd predict with
tta.oof; a full fit; a pseudo-label round; a second member and an ensemble; sanity; eda; leaderboard;
for text, MLM pretraining), and after every stage takes a digest of every file under outputs/,
submissions/ and folds/. It prints each stage's differences and exits 1 if there are any.

What is normalised before the digest, because it changes from one run to the next even with the same
code: wall-clock fields (wall_seconds, seconds, started/ended, the leaderboard's date and minutes),
train.log (time stamps), run.json and code.diff (host, times, git state), and torch checkpoints (.pt),
whose zip archive carries the temp file's random name: they are compared tensor by tensor instead.
JSON and YAML files are compared as data: every key of the before side must hold the same value after,
and keys only the after side has (a new config key, cv.json's "kind") are listed as additions, not as
differences. Everything else is compared byte for byte.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLATILE_KEYS = {"wall_seconds", "seconds", "started", "ended"}
SKIP_NAMES = {"train.log", "run.json", "code.diff"}
TEXT_PRETRAIN = "data.dir=data/demo train.progress=false pretrain.epochs=1 pretrain.max_len=32 pretrain.batch_size=16 pretrain.valid_fraction=0.1"

# (stage name, make target, make variables); run in this order in one project, each after the last
STEPS = [
    ("demo", "all", ["EXP=demo", "ARGS=overwrite=true"]),
    ("tta_predict", "predict", ["EXP=demo", "ARGS=tta.views=[{views}] tta.oof=true"]),
    ("full_fit", "train", ["EXP=demo", "ARGS=train.full_fit=true train.seeds=[1,2]"]),
    ("pseudo", "pseudo", ["EXP=demo", "ARGS=train.epochs=2"]),
    ("member2", "train", ["EXP=demo2", "ARGS=seed=7 train.epochs=3"]),
    ("predict2", "predict", ["EXP=demo2"]),
    ("ensemble", "ensemble", ["NAME=ens", "EXPS=demo demo2 demo_pseudo"]),
    ("submit_ens", "submit", ["EXP=ens"]),
    ("sanity", "sanity", ["EXP=demo", "ARGS=sanity.steps=30"]),
    ("eda", "eda", ["EXP=demo"]),
    ("leaderboard", "leaderboard", []),
]
PROJECTS = {"image": dict(task="image", problem="multiclass", views="identity,hflip"),
            "text": dict(task="text", problem="binary", views="head,tail")}


def template_from(rev: str | None, into: Path) -> Path:
    """The template at a commit (git archive), or the working tree when rev is None."""
    if rev is None:
        return ROOT
    into.mkdir(parents=True, exist_ok=True)
    blob = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


BAKING = threading.Lock()  # cookiecutter changes the process's working folder while it bakes


def bake(template: Path, out: Path, task: str, problem: str) -> Path:
    from cookiecutter.main import cookiecutter
    with BAKING:
        return Path(cookiecutter(str(template), no_input=True, output_dir=str(out),
                                 extra_context={"project_slug": f"id_{task}", "task": task, "problem": problem}))


def tensor_digest(obj, h) -> None:
    import torch
    if isinstance(obj, torch.Tensor):
        h.update(str((obj.dtype, tuple(obj.shape))).encode())
        h.update(obj.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if obj.numel() else b"")
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            tensor_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            tensor_digest(v, h)
    else:
        h.update(repr(obj).encode())


def drop_volatile(obj):
    if isinstance(obj, dict):
        return {k: drop_volatile(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [drop_volatile(v) for v in obj]
    return obj


def digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.suffix == ".pt":
        import torch
        tensor_digest(drop_volatile(torch.load(path, map_location="cpu", weights_only=False)), h)
    elif path.suffix in (".json", ".yaml"):
        return json.dumps(drop_volatile(structured(path)), sort_keys=True)  # compared as data (compare())
    elif path.suffix == ".csv" and path.name in ("history.csv", "leaderboard.csv"):
        import pandas as pd
        df = pd.read_csv(path)
        h.update(df.drop(columns=[c for c in df.columns if c in ("seconds", "date", "minutes", "wall_seconds")])
                 .to_csv(index=False).encode())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def structured(path: Path):
    import yaml
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def additions(before, after, prefix: str = "") -> list[str] | None:
    """Keys only `after` has, or None when a value of `before` is not the same in `after`."""
    if isinstance(before, dict) and isinstance(after, dict):
        added = [f"{prefix}{k}" for k in after if k not in before]
        for k, v in before.items():
            if k not in after:
                return None
            sub = additions(v, after[k], f"{prefix}{k}.")
            if sub is None:
                return None
            added += sub
        return added
    return [] if before == after else None


def snapshot(project: Path) -> dict[str, str]:
    out = {}
    for folder in ("outputs", "submissions", "folds"):
        for p in sorted((project / folder).rglob("*")):
            if p.is_file() and p.name not in SKIP_NAMES and not p.name.endswith(".tmp"):
                out[str(p.relative_to(project))] = digest(p)
    return out


def environment() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    return env


def prepare(templates: dict[str, Path], scratch: Path, task: str, spec: dict) -> dict[str, Path]:
    """Bake each side; the demo data made once, on the first side, and copied to the others."""
    projects = {side: bake(t, scratch / f"{side}_{task}", spec["task"], spec["problem"]) for side, t in templates.items()}
    first = next(iter(projects.values()))
    done = subprocess.run(["make", "demo-data", f"PYTHON={sys.executable}"], cwd=first, env=environment(),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"make demo-data failed in {first}:\n{(done.stdout + done.stderr)[-3000:]}")
    for project in projects.values():
        if project != first:
            shutil.copytree(first / "data", project / "data")
        shutil.copyfile(project / "configs" / "demo.yaml", project / "configs" / "demo2.yaml")  # a second member
    return projects


def run_side(project: Path, name: str, spec: dict) -> dict[str, dict[str, str]]:
    env = environment()
    steps = list(STEPS)
    if spec["task"] == "text":
        steps.append(("pretrain", "pretrain", ["EXP=mlm", f"ARGS=model.name=data/demo/tiny_bert {TEXT_PRETRAIN}"]))
    shots = {}
    for step, target, variables in steps:
        variables = [v.format(views=spec["views"]) for v in variables]
        cmd = ["make", target, f"PYTHON={sys.executable}", *variables]
        done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"[{name}] {' '.join(cmd)} failed in {project}:\n{(done.stdout + done.stderr)[-3000:]}")
        shots[step] = snapshot(project)
        print(f"[{name}] {step}: {len(shots[step])} files", flush=True)
    return shots


def compare(before: dict, after: dict) -> list[str]:
    problems = []
    for step in before:
        a, b = before[step], after.get(step, {})
        for f in sorted(set(a) | set(b)):
            if f not in b:
                problems.append(f"{step}: {f} only before")
            elif f not in a:
                problems.append(f"{step}: {f} only after")
            elif a[f] != b[f]:
                added = additions(json.loads(a[f]), json.loads(b[f])) if f.endswith((".json", ".yaml")) else None
                if added is None:
                    problems.append(f"{step}: {f} differs")
                else:
                    ADDED.setdefault(f.rsplit("/", 1)[-1], set()).update(added)
    return problems


ADDED: dict[str, set[str]] = {}  # file name -> keys that only the after side has


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision of the template before the change")
    ap.add_argument("--after", default=None, help="git revision after; default: the working tree")
    ap.add_argument("--only", choices=list(PROJECTS))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder and print its path")
    ap.add_argument("--allow", action="append", default=[], metavar="GLOB",
                    help="a file (glob on its path, e.g. 'outputs/mlm/pretrain_state.pt') whose difference is "
                         "intended: listed, but not counted as a failure")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="identity_"))
    sides = {"before": template_from(args.before, scratch / "t_before"),
             "after": template_from(args.after, scratch / "t_after") if args.after else ROOT}
    tasks = [t for t in PROJECTS if not args.only or t == args.only]
    results = {}
    for task in tasks:
        projects = prepare(sides, scratch, task, PROJECTS[task])
        # the two sides are independent: side by side, one thread each (the machine has 2 cores)
        with ThreadPoolExecutor(2) as pool:
            shots = pool.map(lambda side: run_side(projects[side], f"{side}/{task}", PROJECTS[task]), projects)
            results.update({(side, task): shot for side, shot in zip(projects, shots)})
    failed = False
    for task in tasks:
        before, after = results[("before", task)], results[("after", task)]
        problems = compare(before, after)
        allowed = [p for p in problems if any(fnmatch.fnmatch(p.split(": ", 1)[1].split()[0], g) for g in args.allow)]
        n = sum(len(s) for s in before.values())
        print(f"{task}: {len(before)} stages, {n} file digests compared, {len(problems) - len(allowed)} differences"
              f"{f' (+{len(allowed)} allowed by --allow)' if allowed else ''}")
        for p in problems:
            print(f"  {p}{'  (allowed)' if p in allowed else ''}")
        failed |= len(problems) > len(allowed)
    for name, keys in sorted(ADDED.items()):
        print(f"added in {name} (not differences): {', '.join(sorted(keys))}")
    if args.keep:
        print(f"scratch: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
