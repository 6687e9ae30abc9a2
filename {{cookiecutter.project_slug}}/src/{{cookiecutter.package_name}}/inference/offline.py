"""A code-competition bundle's predictions (make package): test.csv -> submission.csv with nothing but the
bundle and the competition's test files, no project folder, configs/, git, hub or network.

    python /kaggle/input/<bundle>/inference.py [--data DIR] [--out FILE] [--work DIR]   # the bundle's script

The bundle's script installs the wheels, then calls predict_bundle. Each run of the bundle (runs/<exp>/, an
ensemble's members included) is predicted the way make predict did it (its predict.json: TTA views, reduce,
and the ARGS it was given), through the same code (inference.predictor.predict_models); ensembles combine
their members as make ensemble did (inference.combine.combine_test); the submission is built as make submit
builds it (data.submission.submission_from_preds). Each step goes through a test_preds.csv in the work folder,
as the make targets do through outputs/, so the submission's bytes are make submit's.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from ..core.atomic import write_csv, write_json
from ..core.errors import ConfigError
from ..core.rundir import BundlePaths, get_logger, open_run, preds_frame, read_cv, run_kind
from ..data.files import load_test
from ..data.submission import submission_from_preds
from ..training.setup import make_accelerator
from .combine import combine_test, load_meta_models
from .postrun import apply_file
from .predictor import predict_models
from ..core.tables import read_table

# make predict ARGS that say where things are on the machine that trained, not how to predict
LOCAL_KEYS = ("data.dir", "paths.", "train.device", "tta.oof", "overwrite", "model.weights")
# the libraries whose versions decide the predictions: MANIFEST.json records them, the bundle compares
VERSIONED = ("torch", "torchvision", "timm", "transformers", "tokenizers", "peft", "accelerate", "numpy", "pandas",
             "scikit-learn", "scipy", "albumentations", "opencv-python-headless", "safetensors", "pillow")


def versions() -> dict:
    out = {}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def predict_overrides(record: dict) -> list[str]:
    """make predict's settings (its predict.json) as overrides: the views it resolved to, and the ARGS it
    was given that say how to predict (batch size, infer.*), not where files were."""
    keep = [o for o in record.get("overrides", []) if not o.split("=", 1)[0].strip().startswith(LOCAL_KEYS)]
    tta = [f"tta.views=[{','.join(record['views'])}]", f"tta.reduce={record['reduce']}", "tta.oof=false"]
    if "batched" in record:
        tta.append(f"tta.batched={str(record['batched']).lower()}")
    return keep + tta


def run_overrides(bundle: BundlePaths, exp: str, data_dir: Path) -> list[str]:
    """Where the bundle's run reads from on Kaggle: its runs/ folder and the competition's input folder; a
    text backbone is built from the bundle's own config and tokenizer, whatever model.name said."""
    out = [f"paths.outputs={bundle.runs}", f"data.dir={data_dir}"]
    record = bundle.run_dir(exp) / "predict.json"
    if record.exists():
        out = predict_overrides(json.loads(record.read_text())) + out
    if (bundle.run_dir(exp) / "backbone").is_dir():
        out.append(f"model.name={bundle.run_dir(exp) / 'backbone'}")
    return out


def check_versions(manifest: dict, log: logging.Logger | None = None) -> list[str]:
    """Libraries whose installed version differs from the one the bundle was built with: a warning each (the
    bundle still runs; predictions may differ in the last digits, and pickled meta-models may not load)."""
    log = log or get_logger(None)
    now = versions()
    notes = [f"{d} {v} is installed, the bundle was built with {manifest['versions'][d]}"
             for d, v in now.items() if d in manifest.get("versions", {}) and manifest["versions"][d] != v]
    for note in notes:
        log.warning(f"warning: {note}")
    return notes


class BundleRun:
    """Predicts the bundle's runs once each (a member shared by two ensembles is predicted once)."""

    def __init__(self, bundle: BundlePaths, data_dir: Path, work: Path, log: logging.Logger):
        self.bundle, self.data_dir, self.work, self.log = bundle, Path(data_dir), Path(work), log
        self.done: dict[str, Path] = {}

    def preds(self, exp: str) -> Path:
        """work/<exp>/test_preds.csv, made the way make predict (or make ensemble) made outputs/<exp>/'s."""
        if exp not in self.done:
            cfg, paths, label_map = open_run(exp, run_overrides(self.bundle, exp, self.data_dir), "package")
            out = self.work / exp / "test_preds.csv"
            if run_kind(paths) == "ensemble":
                self.ensemble(cfg, paths, label_map, out)
            else:
                accelerator = make_accelerator(cfg, fresh=True)
                test = load_test(cfg)
                mean = predict_models(cfg, paths, label_map, test, accelerator, self.log)
                write_csv(out, preds_frame(test[cfg.data.id_col], cfg.data.id_col, mean, label_map))
            self.done[exp] = out
        return self.done[exp]

    def ensemble(self, cfg, paths, label_map, out: Path) -> None:
        members, method, id_col = cfg.ensemble.members, cfg.ensemble.method, cfg.data.id_col
        tests = [read_table(self.preds(m), dtype={id_col: str}) for m in members]
        T = np.stack([t[label_map.pred_cols].to_numpy(np.float64) for t in tests])
        cv = read_cv(paths)
        weights = [cv["weights"][m] for m in members] if method in ("weighted", "hill") else None
        fold_models = load_meta_models(paths.meta_models) if method == "stack" else None
        mean = combine_test(method, cfg.problem, T, weights, fold_models)
        write_csv(out, preds_frame(tests[0][id_col], id_col, mean, label_map))
        self.log.info(f"ensemble {paths.exp}: {method} of {members}")


def post_processed(bundle: BundlePaths, manifest: dict, preds: Path, out: Path, id_col: str, label_map) -> Path:
    """The bundle's post.method (MANIFEST.json post_method), applied with the parameters make package copied
    (runs/<exp>/post.json, fitted on all OOF rows): out; preds itself when the bundle has none."""
    method = manifest.get("post_method", "none")
    if method == "none":
        return preds
    params = json.loads((bundle.run_dir(manifest["exp"]) / "post.json").read_text())["params"]
    return apply_file(method, params, preds, out, id_col, label_map,
                      "the bundle's runs disagree with its labels.json")


def predict_bundle(bundle_dir: Path, data_dir: Path, out: Path, work: Path | None = None) -> dict:
    """The bundle's experiment on data_dir's test file -> out (submission.csv). work keeps every run's
    test_preds.csv and bundle_run.json (what ran, how long); a temporary folder when None."""
    bundle = BundlePaths(bundle_dir)
    if not bundle.manifest.is_file():
        raise ConfigError(f"{bundle.root} holds no MANIFEST.json: point --bundle at a folder made by make package")
    manifest = json.loads(bundle.manifest.read_text())
    log = get_logger(None)
    check_versions(manifest, log)
    with tempfile.TemporaryDirectory(prefix="bundle_work_") as tmp:
        work = Path(work) if work else Path(tmp)
        start = time.perf_counter()
        runner = BundleRun(bundle, data_dir, work, log)
        final = runner.preds(manifest["exp"])
        cfg, _, label_map = open_run(manifest["exp"], run_overrides(bundle, manifest["exp"], data_dir), "package")
        final = post_processed(bundle, manifest, final, final.with_name("test_post.csv"), cfg.data.id_col, label_map)
        seconds = time.perf_counter() - start
        sub = submission_from_preds(cfg, label_map, final, "the bundle's runs disagree with its labels.json")
        write_csv(Path(out), sub)
        record = {"bundle": manifest["bundle"], "exp": manifest["exp"], "rows": len(sub),
                  "predict_seconds": round(seconds, 3), "submission": str(out),
                  "package_dir": str(Path(__file__).resolve().parents[1]), "versions": versions()}
        write_json(work / "bundle_run.json", record)
    log.info(f"submission written: {out} ({len(sub)} rows) in {seconds:.1f} s of prediction")
    return record
