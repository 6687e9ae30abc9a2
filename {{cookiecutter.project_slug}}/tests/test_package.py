"""make package / make package-test: an offline Kaggle bundle that reproduces make submit's bytes with the
network blocked, carries only what inference needs, projects its inference time and refuses bad input
before writing anything."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import yaml

from conftest import TARGET_OVERRIDE
from helpers import PKG_NAME, PROJECT, mod, run_cli

package, rehearse, offline = mod("package"), mod("rehearse"), mod("inference.offline")
ConfigError, DataError = mod("core.errors").ConfigError, mod("core.errors").DataError
_CFG = mod("core.config").load(config_dir=PROJECT / "configs")
TASK, ID = _CFG.task, _CFG.data.id_col
VIEWS = "tta.views=[identity,hflip]" if TASK == "image" else "tta.views=[identity,head_tail]"


def _stage(name: str, *argv: str) -> None:
    assert run_cli(name, *argv) == 0, f"make {name} {argv} failed"


def _args(demo_dir: Path) -> list[str]:
    args = [f"data.dir={demo_dir}", *TARGET_OVERRIDE, "train.progress=false", "train.epochs=1"]
    return args + ([f"model.name={demo_dir / 'tiny_bert'}"] if TASK == "text" else [])


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_dir):
    """A scratch project: one tiny k-fold run 'pk', predicted with two TTA views and submitted."""
    root = tmp_path_factory.mktemp("pkg")
    shutil.copytree(PROJECT / "configs", root / "configs")
    before = os.getcwd()
    os.chdir(root)
    try:
        shutil.copyfile("configs/demo.yaml", "configs/pk.yaml")
        args = _args(demo_dir)
        _stage("folds", "--exp", "pk", *args)
        _stage("train", "--exp", "pk", *args)
        if TASK == "text":  # as if model.name had been a hub id: the bundle must never look for it
            saved = yaml.safe_load(Path("outputs/pk/config.yaml").read_text())
            saved["model"]["name"] = "some-org/a-model-not-on-this-machine"
            Path("outputs/pk/config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
        _stage("predict", "--exp", "pk", VIEWS)
        _stage("submit", "--exp", "pk")
    finally:
        os.chdir(before)
    return root


@pytest.fixture
def inside(project, monkeypatch):
    monkeypatch.chdir(project)
    from accelerate.state import AcceleratorState, GradientState
    yield project
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    shutil.rmtree(project / "packages", ignore_errors=True)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_rehearsal_with_the_network_blocked_writes_make_submits_bytes(inside):
    bundle = package.run("pk", ["package.owner=someone"], name="pk_bundle")
    result = rehearse.run(None, [], name="pk_bundle")
    assert result["passed"] and result["identical_to_make_submit"] and result["max_abs_pred_diff"] == 0.0
    assert result["network"].startswith("blocked")
    assert result["projected_seconds"] > 0 and result["inference_seconds"] > 0
    assert json.loads((bundle.parent / "pk_bundle.rehearsal.json").read_text())["passed"]
    assert not (bundle.parent / "pk_bundle.rehearsal").exists()  # scratch removed once every check passed
    assert result["identical_to_submissions_file"] is True  # submissions/pk.csv, written by make submit


def test_bundle_holds_what_inference_needs_and_a_manifest_of_it(inside):
    bundle = package.run("pk", ["package.owner=someone", "package.competition=some-comp"], name="pk_bundle")
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    files = _files(bundle)
    assert {f["path"] for f in manifest["files"]} == files - {"MANIFEST.json"}
    for f in manifest["files"]:
        assert mod("core.records").file_sha256(bundle / f["path"]) == f["sha256"]
        assert (bundle / f["path"]).stat().st_size == f["bytes"]
    assert manifest["total_bytes"] == sum(f["bytes"] for f in manifest["files"])
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0]
    run_files = {f.split("/", 2)[2] for f in files if f.startswith("runs/pk/")}
    folds = json.loads((inside / "outputs/pk/cv.json").read_text())["folds_run"]
    expected = {"config.yaml", "labels.json", "cv.json", "predict.json", *(f"fold{k}/best.pt" for k in folds)}
    assert {f for f in run_files if not f.startswith("backbone/")} == expected  # no OOF, logs, last.pt, plots
    assert any(f.startswith("backbone/") for f in run_files) == (TASK == "text")
    ckpt = torch.load(bundle / "runs/pk/fold0/best.pt", weights_only=True)
    assert list(ckpt) == ["model"]
    wheels = [f for f in files if f.startswith("wheels/")]
    assert len(wheels) == 1 and wheels[0].endswith("-py3-none-any.whl")
    kernel = json.loads((bundle / "kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["competition_sources"] == ["some-comp"]
    assert kernel["dataset_sources"] == ["someone/pk-bundle"] and kernel["code_file"] == "inference.ipynb"
    assert json.loads((bundle / "dataset-metadata.json").read_text())["id"] == "someone/pk-bundle"
    nb = nbformat.read(bundle / "inference.ipynb", as_version=4)
    nbformat.validate(nb)
    script = (bundle / "inference.py").read_text()
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert all(c in script for c in code[:-1]) and code[-1].startswith("record = main([])")
    assert f"BUNDLE = 'pk_bundle'" in script and f"PACKAGE = {PKG_NAME!r}" in script


@pytest.mark.slow
def test_fp16_bundle_is_smaller_and_predicts_within_rounding(inside, tmp_path):
    full = package.run("pk", [], name="full32")
    half = package.run("pk", ["package.half=true"], name="half16")
    size = lambda b: sum((b / "runs/pk" / f).stat().st_size for f in ("fold0/best.pt",))  # noqa: E731
    assert size(half) < 0.6 * size(full)
    state = torch.load(half / "runs/pk/fold0/best.pt", weights_only=True)["model"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    data = yaml.safe_load((inside / "outputs/pk/config.yaml").read_text())["data"]["dir"]
    offline.predict_bundle(half, Path(data), tmp_path / "sub.csv", tmp_path / "work")
    ours = pd.read_csv(tmp_path / "work/pk/test_preds.csv", dtype={ID: str}).set_index(ID)
    theirs = pd.read_csv(inside / "outputs/pk/test_preds.csv", dtype={ID: str}).set_index(ID)
    diff = (ours - theirs.loc[ours.index]).abs().to_numpy().max()
    assert 0 < diff < 1e-2


POST = {"binary": ("threshold", "f1"), "multiclass": ("prior", "accuracy"),
        "multilabel": ("class_thresholds", "f1_macro"), "regression": ("rounder", "qwk")}


def _pushed(params: dict, test_preds: Path) -> dict:
    """Fitted post-processing parameters moved far enough to change many decisions."""
    if "threshold" in params:  # the median test probability: half the labels flip, whichever side they were on
        return {"threshold": float(pd.read_csv(test_preds).iloc[:, -1].median())}  # the positive class
    if "offsets" in params:
        return {"offsets": [0.0] + [3.0] + [0.0] * (len(params["offsets"]) - 2)}
    if "thresholds" in params:
        return {"thresholds": [0.9] * len(params["thresholds"])}
    return {**params, "cuts": [[c + 0.7 for c in cuts] for cuts in params["cuts"]]}


def test_a_bundle_submits_the_post_processed_labels_make_submit_wrote(inside, tmp_path):
    method, metric = POST[_CFG.problem]
    shutil.copytree(inside / "outputs/pk", inside / "outputs/pk_post")
    saved = yaml.safe_load(Path("outputs/pk_post/config.yaml").read_text())
    Path("outputs/pk_post/config.yaml").write_text(yaml.safe_dump({**saved, "metric": metric}, sort_keys=False))
    _stage("submit", "--exp", "pk_post")
    plain = (inside / "submissions/pk_post.csv").read_bytes()
    _stage("submit", "--exp", "pk_post", f"post.method={method}")  # fits post.json
    post = json.loads(Path("outputs/pk_post/post.json").read_text())
    pushed = _pushed(post["params"], Path("outputs/pk_post/test_preds.csv"))
    Path("outputs/pk_post/post.json").write_text(json.dumps({**post, "params": pushed}))
    _stage("submit", "--exp", "pk_post", f"post.method={method}")  # post.json is current: used as it is
    made = (inside / "submissions/pk_post.csv").read_bytes()
    assert made != plain
    bundle = package.run("pk_post", [f"post.method={method}"], name="b_post")
    assert json.loads((bundle / "MANIFEST.json").read_text())["post_method"] == method
    assert json.loads((bundle / "runs/pk_post/post.json").read_text())["params"] == pushed
    data = yaml.safe_load((inside / "outputs/pk/config.yaml").read_text())["data"]["dir"]
    offline.predict_bundle(bundle, Path(data), tmp_path / "sub.csv", tmp_path / "work")
    assert (tmp_path / "sub.csv").read_bytes() == made
    without = package.run("pk_post", [], name="b_plain")  # post.method=none: a note, and the plain labels
    assert json.loads((without / "MANIFEST.json").read_text())["post_method"] == "none"
    offline.predict_bundle(without, Path(data), tmp_path / "plain.csv", tmp_path / "work2")
    assert (tmp_path / "plain.csv").read_bytes() == plain
    shutil.rmtree(inside / "outputs/pk_post")


@pytest.mark.slow
def test_full_fit_and_pseudo_runs_are_bundled_with_their_own_models(inside, tmp_path, demo_dir):
    _stage("train", "--exp", "pk", *_args(demo_dir), "train.full_fit=true", "train.seeds=[1,2]", "overwrite=true")
    text_model = [a for a in _args(demo_dir) if a.startswith("model.name=")]  # pk's config names a hub id
    _stage("pseudo", "--exp", "pk", "--name", "pk_ps", "pseudo.threshold=0.0", "overwrite=true", *text_model)
    data = yaml.safe_load((inside / "outputs/pk/config.yaml").read_text())["data"]["dir"]
    for exp, models in (("pk_full", {"seed1/model.pt", "seed2/model.pt"}), ("pk_ps", None)):
        bundle = package.run(exp, [], name=f"b_{exp}")
        manifest = json.loads((bundle / "MANIFEST.json").read_text())
        assert manifest["kind"] == ("full_fit" if models else "pseudo")
        if models:
            assert set(manifest["runs"][exp]["checkpoints"]) == models
        offline.predict_bundle(bundle, Path(data), tmp_path / f"{exp}.csv", tmp_path / "work")
        assert (tmp_path / f"work/{exp}/test_preds.csv").read_bytes() == \
            (inside / f"outputs/{exp}/test_preds.csv").read_bytes()


def _second_member(root: Path, name: str) -> None:
    """A copy of run pk predicted with the identity view only: a member that differs from pk."""
    shutil.copytree(root / "outputs/pk", root / f"outputs/{name}")
    _stage("predict", "--exp", name, "tta.views=[identity]")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["weighted", "stack"])
def test_ensemble_bundle_predicts_test_as_make_ensemble_did(inside, tmp_path, method):
    if not (inside / "outputs/pk_id").exists():
        _second_member(inside, "pk_id")
    _stage("ensemble", "--name", f"ens_{method}", "--exps", "pk pk_id", f"ensemble.method={method}", "overwrite=true")
    bundle = package.run(f"ens_{method}", [], name=f"b_{method}")
    assert sorted(p.name for p in (bundle / "runs").iterdir()) == sorted(["pk", "pk_id", f"ens_{method}"])
    assert (bundle / f"runs/ens_{method}/meta_models.pkl").exists() == (method == "stack")
    data = yaml.safe_load((inside / "outputs/pk/config.yaml").read_text())["data"]["dir"]
    offline.predict_bundle(bundle, Path(data), tmp_path / "sub.csv", tmp_path / "work")
    assert (tmp_path / f"work/ens_{method}/test_preds.csv").read_bytes() == \
        (inside / f"outputs/ens_{method}/test_preds.csv").read_bytes()
    _stage("submit", "--exp", f"ens_{method}")
    assert (tmp_path / "sub.csv").read_bytes() == (inside / f"submissions/ens_{method}.csv").read_bytes()


@pytest.mark.slow
def test_projection_over_the_time_limit_is_refused_with_what_each_part_costs(inside):
    with pytest.raises(ConfigError) as e:
        package.run("pk", ["package.time_limit=0.000001", "package.test_rows=1000000"], name="slow")
    msg = str(e.value)
    assert "package.time_limit=1e-06 h" in msg and "1000000 test rows" in msg
    assert "pk fold 0" in msg and "view hflip" in msg if TASK == "image" else "view head_tail" in msg
    assert not (inside / "packages/slow").exists() and not list((inside / "packages").glob(".slow*"))


def _nothing_written(root: Path) -> None:
    assert not (root / "packages").exists() or not [p for p in (root / "packages").iterdir()]


def test_bad_input_is_one_error_before_anything_is_written(inside, monkeypatch):
    cases = [("nope", [], "outputs/nope does not exist"),
             ("pk", ["package.extra_wheels=[/no/such.whl]"], "/no/such.whl is not a file")]
    for exp, args, match in cases:
        with pytest.raises(ConfigError, match=match):
            package.run(exp, args, name="bad")
        _nothing_written(inside)
    with pytest.raises(ConfigError, match="bundle name"):
        package.run("pk", [], name="no spaces")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach an index: the name cannot be fetched
    with pytest.raises(ConfigError, match="cannot fetch 'zz-no-such-package-zz'"):
        package.run("pk", ["package.extra_wheels=[zz-no-such-package-zz]"], name="bad")
    _nothing_written(inside)
    monkeypatch.delenv("PIP_NO_INDEX")


def test_unpredicted_runs_missing_members_and_foreign_checkpoints_are_refused(inside):
    out = inside / "outputs"
    shutil.copytree(out / "pk", out / "unpredicted")
    (out / "unpredicted/test_preds.csv").unlink()
    with pytest.raises(ConfigError, match="has not been predicted"):
        package.run("unpredicted", [], name="bad")
    shutil.copytree(out / "pk", out / "foreign")
    ckpt = torch.load(out / "foreign/fold0/best.pt", weights_only=True)
    ckpt["model"] = {f"other.{k}": v for k, v in ckpt["model"].items()}
    torch.save(ckpt, out / "foreign/fold0/best.pt")
    with pytest.raises(DataError, match="does not load into the configured model"):
        package.run("foreign", [], name="bad")
    _nothing_written(inside)
    if not (out / "pk_id").exists():
        _second_member(inside, "pk_id")
    _stage("ensemble", "--name", "ens_gone", "--exps", "pk pk_id", "overwrite=true")
    shutil.move(out / "pk_id", out / "pk_id_moved")
    try:
        with pytest.raises(ConfigError, match="ensemble member 'pk_id' of 'ens_gone'"):
            package.run("ens_gone", [], name="bad")
    finally:
        shutil.move(out / "pk_id_moved", out / "pk_id")
    _nothing_written(inside)


@pytest.mark.slow  # problem-agnostic: runs in the one image and one text project that run the slow tests
def test_an_existing_bundle_is_replaced_only_with_overwrite(inside):
    bundle = package.run("pk", [], name="again")
    stamp = (bundle / "MANIFEST.json").read_text()
    with pytest.raises(ConfigError, match="already holds bundle 'again'"):
        package.run("pk", [], name="again")
    assert (bundle / "MANIFEST.json").read_text() == stamp
    package.run("pk", ["overwrite=true"], name="again")
    assert json.loads((bundle / "MANIFEST.json").read_text())["bundle"] == "again"


def test_network_guard_fails_and_logs_a_connect_that_a_library_swallows(tmp_path):
    log = tmp_path / "net.log"
    python = rehearse.make_venv(tmp_path / "venv", log)
    env = rehearse.clean_env(tmp_path, tmp_path, log)
    swallow = ("import urllib.request\ntry:\n    urllib.request.urlopen('http://198.51.100.7/', timeout=3)\n"
               "except Exception as e:\n    print('swallowed', type(e).__name__)\n")
    done = subprocess.run([str(python), "-c", swallow], env=env, capture_output=True, text=True)
    assert done.stdout.startswith("swallowed") and "198.51.100.7" in log.read_text()
    found = subprocess.run([str(python), "-c", f"import {PKG_NAME}"], env=env, capture_output=True, text=True)
    assert found.returncode != 0  # the project is not importable until a bundle installs its wheel
    assert subprocess.run([str(python), "-c", "import torch, pandas"], env=env).returncode == 0  # base libraries
