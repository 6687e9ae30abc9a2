"""The inference-time budget of a bundle: each model of each run timed on a sample of test rows, per TTA view,
projected to package.test_rows rows and held against package.time_limit (hours).

Timed on this machine with the bundle's own code path (the run's predict.json settings, its checkpoints
loaded with the shape check, the inputs check, the views one at a time); a Kaggle GPU is usually faster
than a CPU here, a Kaggle CPU slower than a workstation. The projection is linear in rows; loading a model
is a fixed cost, as are a run's setup (accelerator, modality, reading test.csv) and the process's start-up
(imports; timed in a fresh Python process). The first model timed also pays the warm-up (thread pools,
allocator), which errs long.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

from ..core.errors import ConfigError
from ..core.rundir import open_run
from ..data.files import load_test
from ..inference.models import load_model, run_models
from ..inference.offline import predict_overrides
from ..inference.predictor import view_predictor
from ..modality import get_modality
from ..training.setup import make_accelerator


def time_run(root, exp: str, sample_rows: int) -> dict:
    """Seconds of the inputs check, each model's load and each (model, view) on the first sample_rows rows."""
    record = json.loads((root / exp / "predict.json").read_text())
    cfg, paths, label_map = open_run(exp, predict_overrides(record) + [f"paths.outputs={root}"], "package")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=False))
    start = time.perf_counter()
    accelerator = make_accelerator(cfg, fresh=True)
    test = load_test(cfg)
    mod = get_modality(cfg, paths.backbone)
    setup = time.perf_counter() - start
    sample = test.iloc[:min(sample_rows, len(test))]
    start = time.perf_counter()
    if cfg.data.check_inputs:
        mod.check_inputs(sample, cfg.data.test_file)
    out = {"exp": exp, "rows": len(sample), "test_rows": len(test), "setup_s": setup,
           "check_s": time.perf_counter() - start, "models": []}
    for name, checkpoint, _ in run_models(paths):
        start = time.perf_counter()
        model = load_model(mod, label_map, checkpoint, accelerator)  # also: does it load at all
        timing = {"name": name, "load_s": time.perf_counter() - start, "views": {}}
        for view in cfg.tta.views:
            one = dataclasses.replace(cfg, tta=dataclasses.replace(cfg.tta, views=[view]))
            predict = view_predictor(one, mod, label_map, sample, accelerator)
            start = time.perf_counter()
            predict(model, f"{name} {view}")
            timing["views"][view] = time.perf_counter() - start
        out["models"].append(timing)
        accelerator.free_memory()
    return out


def startup_seconds(package: str, task: str) -> float:
    """A fresh process's imports before the first prediction (torch, the modality, Accelerate's setup)."""
    code = (f"import time; t = time.perf_counter(); import {package}.inference.offline; "
            f"import {package}.modality.{task}; from {package}.training.setup import configure_determinism; "
            f"configure_determinism(False); print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0.0  # an import problem shows in the timed runs themselves, with its own message


def run_seconds(t: dict, rows: int) -> float:
    scale = rows / max(t["rows"], 1)
    return t["setup_s"] + t["check_s"] * scale + sum(m["load_s"] + sum(m["views"].values()) * scale for m in t["models"])


def projection(timings: list[dict], rows: int, limit_hours: float, startup: float) -> dict:
    """What MANIFEST.json records: the projected seconds for `rows` rows and for test.csv's, and the costs."""
    test_rows = timings[0]["test_rows"] if timings else 0
    return {"rows": rows, "seconds": round(startup + sum(run_seconds(t, rows) for t in timings), 3),
            "test_csv_rows": test_rows,
            "test_csv_seconds": round(startup + sum(run_seconds(t, test_rows) for t in timings), 3),
            "time_limit_hours": limit_hours, "startup_s": round(startup, 3), "timings": timings}


def human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def costs(timings: list[dict], rows: int) -> list[str]:
    """What each fold / seed model, each view and each run (an ensemble's members) costs at `rows` rows."""
    lines = []
    scale = lambda t: rows / max(t["rows"], 1)  # noqa: E731
    for t in timings:
        if len(timings) > 1:
            lines.append(f"run '{t['exp']}' {human(run_seconds(t, rows))}")
        lines += [f"{t['exp']} {m['name']} {human(m['load_s'] + sum(m['views'].values()) * scale(t))}"
                  for m in t["models"]]
        views = {v for m in t["models"] for v in m["views"]}
        if len(views) > 1:
            lines += [f"{t['exp']} view {v} {human(sum(m['views'][v] for m in t['models']) * scale(t))}"
                      for v in sorted(views)]
    return lines


def check_budget(plan: dict) -> None:
    limit = plan["time_limit_hours"]
    if limit and plan["seconds"] > limit * 3600:
        raise ConfigError(
            f"the bundle's projected inference time is {human(plan['seconds'])} for {plan['rows']} test rows "
            f"(package.test_rows), over package.time_limit={limit:g} h; what each part costs: "
            + "; ".join(costs(plan["timings"], plan["rows"]))
            + ". Drop folds (train.folds) or use a full fit, drop TTA views (make predict ARGS=\"tta.views=[...]\"), "
              "drop ensemble members, or set package.time_limit (hours; 0 = no check)")
