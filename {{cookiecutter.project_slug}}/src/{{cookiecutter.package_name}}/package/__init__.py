"""make package: a trained and predicted experiment -> packages/<bundle>/, an offline Kaggle bundle for a code
competition (a Kaggle Dataset holding the wheels, the runs and a notebook that needs no network).

    make package EXP=exp001 [NAME=<bundle>] [ARGS="package.half=true package.owner=<user> package.competition=<slug>"]
    make package-test NAME=<bundle>                 # rehearse it here, network blocked (rehearse.py)
    kaggle datasets create -p packages/<bundle>     # upload it as it is
    kaggle kernels push -p packages/<bundle>        # the notebook, internet off, writes submission.csv

EXP may be a k-fold, full-fit, pseudo or ensemble run (its members are bundled too); each must have been
predicted (make predict / make ensemble), since the bundle predicts as that did. Before anything is
written: every run is checked, every checkpoint is loaded into the configured model, the wheels are built
(package.extra_wheels fetched), and the inference time is projected (package/budget.py) and held against
package.time_limit. The bundle is assembled in packages/.<bundle>.partial/ and renamed when complete; an
existing bundle is only replaced with ARGS="overwrite=true". package.*, overwrite and paths.packages come
from configs/default.yaml < configs/<exp>.yaml < ARGS, not from the run's saved config.

What goes in: package/contents.py; the Kaggle files: package/kaggle.py; the notebook's code: package/script.py;
what runs on Kaggle: inference/offline.py; the layout: core.rundir.BundlePaths.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..core.cli import run_stage
from ..core.config import load
from ..core.errors import ConfigError
from ..core.lock import hold
from ..core.rundir import BundlePaths, bundle_paths, get_logger, open_run, outputs_root
from ..inference.offline import versions
from ..inference.postrun import check as check_post, current_post
from .budget import check_budget, human, projection, startup_seconds, time_run
from .contents import collect_runs, copy_runs
from .kaggle import (build_wheels, check_name, dataset_metadata, kernel_metadata, manifest, notebook_text, owner,
                     script_text, slug, write_json_file)

PROJECT = Path(__file__).resolve().parents[3]  # src/<package>/package/ -> the project folder
PACKAGE = __package__.split(".")[0]
OWN_KEYS = ("package.", "overwrite=", "paths.packages=", "post.")


def settings(exp: str, overrides: list[str]):
    """package.*, overwrite, paths.packages, post.*: this stage's own (a run saved with overwrite=true must not
    replace bundles; post.method as make submit takes it)."""
    return load(exp, [o for o in overrides if o.startswith(OWN_KEYS)])


def run(exp: str | None, overrides: list[str], name: str | None = None) -> Path:
    if not exp:
        raise ConfigError("name the experiment: make package EXP=<exp> [NAME=<bundle>]")
    name = name or exp
    check_name(name)
    own = settings(exp, overrides)
    bundle = bundle_paths(own.paths.packages, name)
    if bundle.root.exists() and any(bundle.root.iterdir()) and not own.overwrite:
        raise ConfigError(f"{bundle.root} already holds bundle '{name}'; choose another NAME or pass "
                          f"ARGS=\"overwrite=true\" to replace it")
    if not (PROJECT / "pyproject.toml").is_file():
        raise ConfigError(f"make package builds the project's wheel from {PROJECT / 'pyproject.toml'}, which does "
                          f"not exist: run it in the project folder")
    with hold(bundle.root, "package"):
        return build(exp, overrides, name, own, bundle)


def build(exp: str, overrides: list[str], name: str, own, bundle: BundlePaths) -> Path:
    root = outputs_root(overrides)
    runs = collect_runs(root, exp)
    cfg, paths, label_map = open_run(exp, [f"paths.outputs={root}"], "package")
    log = get_logger(None)
    post = bundle_post(cfg, own, paths, label_map, runs[exp], log)
    partial = bundle.root.parent / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        wheels = build_wheels(PROJECT, own.package.extra_wheels, BundlePaths(partial).wheels)
        timings = [time_run(root, r.exp, own.package.sample_rows) for r in runs.values() if r.kind != "ensemble"]
        plan = projection(timings, own.package.test_rows or timings[0]["test_rows"], own.package.time_limit,
                          startup_seconds(PACKAGE, cfg.task))
        log.info(f"projected inference time on this machine: {human(plan['seconds'])} for {plan['rows']} test rows "
                 f"(limit {own.package.time_limit:g} h), {human(plan['test_csv_seconds'])} for test.csv's "
                 f"{plan['test_csv_rows']}")
        check_budget(plan)
        copy_runs(root, runs, BundlePaths(partial).runs, own.package.half)
        write_files(name, BundlePaths(partial), own, cfg, runs, plan, wheels, post)
        if bundle.root.exists():
            shutil.rmtree(bundle.root)
        os.replace(partial, bundle.root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    made = json.loads(bundle.manifest.read_text())
    log.info(f"bundle written: {bundle.root} ({len(made['files'])} files, {made['total_bytes'] / 1e6:.1f} MB"
             f"{', fp16 weights' if own.package.half else ''}); rehearse it: make package-test NAME={name}")
    return bundle.root


def bundle_post(cfg, own, paths, label_map, top, log) -> str:
    """post.method for the bundle (as make submit: configs/<exp>.yaml < ARGS): post.json fitted (or kept when
    current) and bundled with the top run, so the notebook submits the post-processed labels."""
    if own.post.method == "none":
        if paths.post.is_file():
            log.info(f"note: {paths.post} exists but post.method=none: the bundle's submission is not "
                     f"post-processed (pass ARGS=\"post.method=...\" to bundle it)")
        return "none"
    cfg.post = own.post
    check_post(cfg)
    current_post(cfg, paths, label_map)
    top.files.append(paths.post.name)
    return cfg.post.method


def write_files(name: str, out: BundlePaths, own, cfg, runs: dict, plan: dict, wheels: list[str],
                post: str = "none") -> None:
    """The script, the notebook, the two metadata files and, last, MANIFEST.json (it lists the others)."""
    user, competition = owner(own.package.owner), own.package.competition or Path(cfg.data.dir).name
    script = script_text(name, PACKAGE)
    out.script.write_text(script)
    out.notebook.write_text(notebook_text(script))
    write_json_file(out.dataset_meta, dataset_metadata(name, user, own.package.licence))
    write_json_file(out.kernel_meta, kernel_metadata(name, user, own.package.competition,
                                                                   own.package.gpu))
    log = get_logger(None)
    if user == "your-kaggle-username":
        log.warning("warning: package.owner is not set (nor $KAGGLE_USERNAME): the metadata files name "
                    "'your-kaggle-username'; set it before kaggle datasets create")
    if not own.package.competition:
        log.warning("warning: package.competition is not set: kernel-metadata.json names no competition, so "
                    "kaggle kernels push would not attach its data; set package.competition=<slug>")
    info = {"bundle": name, "slug": slug(name), "exp": next(iter(runs)), "kind": next(iter(runs.values())).kind, "package": PACKAGE,
            "wheels": wheels, "half": own.package.half, "competition": competition,
            "test_file": cfg.data.test_file, "sample_submission_file": cfg.data.sample_submission_file,
            "runs": {r.exp: {"kind": r.kind, "members": r.members, "checkpoints": r.checkpoints}
                     for r in runs.values()},
            "budget": plan, "post_method": post}
    write_json_file(out.manifest, manifest(out.root, info, versions()))


def main(argv=None):
    run_stage(run, argv, options=("--name",))


if __name__ == "__main__":
    main()
