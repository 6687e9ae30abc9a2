"""Baking: every task x problem bakes into exactly the expected files, with no template syntax left,
and the hooks reject bad answers with a message naming the variable."""
from __future__ import annotations

import py_compile
import re
import subprocess
import sys

import pytest
import yaml

from conftest import COMBOS, ROOT, bake_into, make

SRC = [  # src/<package>/..., the layers and the stages (one module or folder per make target)
    "__init__", "__main__", "check", "config", "folds", "train", "predict", "submit", "pseudo", "sanity", "leaderboard",
    "rehearse", "package/__init__", "package/__main__", "package/budget", "package/contents", "package/kaggle",
    "package/script",
    "core/__init__", "core/atomic", "core/auto",
    "core/cli", "core/config", "core/errors", "core/labels", "core/metric_table",
    "core/metrics", "core/records", "core/rundir", "core/schema", "core/tables", "core/lock", "core/launch",
    "data/__init__", "data/files", "data/preflight", "data/splits", "data/submission",
    "modality/__init__", "modality/tta",
    "training/__init__", "training/checkpoints", "training/fit", "training/fullfit", "training/kfold",
    "training/loop", "training/optim", "training/plots", "training/setup", "training/tracking", "training/evals",
    "training/saver",
    "training/tricks/__init__", "training/tricks/adversarial", "training/tricks/averaging",
    "training/tricks/losses", "training/tricks/rdrop",
    "inference/__init__", "inference/combine", "inference/models", "inference/offline", "inference/predictor",
    "ensemble/__init__", "ensemble/__main__", "ensemble/blend", "ensemble/members",
    "eda/__init__", "eda/__main__", "eda/report", "demo/__init__", "demo/__main__",
    "report", "reporting/__init__", "reporting/page", "reporting/figures", "reporting/rundata", "reporting/analysis",
    "reporting/sections", "tune/__init__", "tune/__main__", "tune/report", "tune/setup", "tune/space", "tune/study",
    "inference/postprocess", "inference/postrun", "core/noise",
]
COMMON = {
    ".gitignore", "Makefile", "README.md", "pyproject.toml", "requirements.txt",
    "configs/default.yaml", "configs/demo.yaml", "src/{pkg}/core/baked.json",
    *[f"src/{{pkg}}/{m}.py" for m in SRC],
    *[f"tests/{t}.py" for t in ("conftest", "helpers", "test_bad_inputs", "test_config", "test_folds",
                                "test_pipeline", "test_submit", "test_targets_metrics", "test_adversarial",
                                "test_averaging", "test_losses", "test_rdrop", "test_optim", "test_tricks_train",
                                "test_tta", "test_pseudo", "test_ensemble", "test_eda", "test_sanity",
                                "test_leaderboard", "test_records", "test_tracking", "test_resume", "test_seeds",
                                "test_nonfinite", "crash_run", "test_layers", "test_package", "test_faults",
                                "test_report", "test_tune", "test_post", "test_noise", "runs", "test_schedule")],
}
ONLY = {  # the modality's own files: the post-gen hook removes the other modality's
    "image": {"src/{pkg}/modality/image.py", "src/{pkg}/modality/augment.py", "src/{pkg}/demo/image.py",
              "src/{pkg}/eda/image.py", "src/{pkg}/reporting/image.py",
              "src/{pkg}/training/tricks/mixing.py", "tests/test_image.py", "tests/test_mixing.py",
              "src/{pkg}/modality/image_cache.py", "tests/test_image_cache.py", "tests/test_image_model.py"},
    "text": {"src/{pkg}/modality/text.py", "src/{pkg}/modality/text_model.py", "src/{pkg}/modality/lora.py",
             "src/{pkg}/modality/buckets.py", "src/{pkg}/demo/text.py", "src/{pkg}/eda/text.py",
             *[f"src/{{pkg}}/pretrain/{m}.py" for m in ("__init__", "__main__", "corpus", "model")],
             "tests/test_text.py", "tests/test_text_recipes.py", "tests/test_pretrain.py", "tests/test_buckets.py"},
}


def files_of(project):
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.parametrize("task, problem", COMBOS)
def test_bake_gives_exactly_the_expected_files(baked, task, problem):
    project = baked[(task, problem)]
    expected = {f.format(pkg=project.name) for f in COMMON | ONLY[task]}
    assert files_of(project) == expected


@pytest.mark.parametrize("task, problem", COMBOS)
def test_no_template_syntax_survives_and_python_compiles(baked, task, problem):
    project = baked[(task, problem)]
    for path in project.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_text()
            assert "{{" not in text and "{%" not in text, path
            if path.suffix == ".py":
                py_compile.compile(str(path), doraise=True)


@pytest.mark.parametrize("task, problem", COMBOS)
def test_the_other_modality_leaves_no_code_behind(baked, task, problem):
    src = "\n".join(p.read_text() for p in (baked[(task, problem)] / "src").rglob("*.py"))
    # timm stays in text projects for its ModelEmaV3 (tricks/averaging.py), not for image code
    other = "timm\\.data|timm$|albumentations|cv2|PIL" if task == "text" else "transformers|tokenizers"
    assert not re.search(rf"^\s*(import|from)\s+({other})\b", src, re.M)


@pytest.mark.parametrize("task, problem", COMBOS)
def test_default_config_resolves_with_the_baked_answers(baked, task, problem):
    project = baked[(task, problem)]
    out = subprocess.run([sys.executable, "-m", project.name, "config"], cwd=project, capture_output=True, text=True,
                         env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert (cfg["task"], cfg["problem"]) == (task, problem)
    assert cfg["train"]["n_folds"] == 5 and cfg["data"]["id_col"] == "id"


def test_make_help_lists_every_target(baked):
    out = make("help", baked[("image", "multiclass")])
    for target in ("install", "folds", "train", "predict", "submit", "demo", "test", "check"):
        assert f"make {target} " in out.stdout


def test_pretrain_is_a_text_stage_with_a_clear_message_elsewhere(baked):
    image = baked[("image", "multiclass")]
    out = subprocess.run([sys.executable, "-m", image.name, "pretrain"], cwd=image, capture_output=True, text=True,
                         env={"PYTHONPATH": str(image / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "text projects only" in out.stderr and "Traceback" not in out.stderr
    assert "make pretrain " in make("help", baked[("text", "binary")]).stdout
    assert "pretrain" not in make("help", image).stdout


def test_answers_flow_into_the_config(tmp_path):
    project = bake_into(tmp_path, task="text", problem="regression", project_slug="qwk_comp", metric="qwk",
                        backbone="/models/deberta", target_cols="content, wording", text_cols="prompt,answer",
                        n_folds="4", max_len="512")
    cfg = yaml.safe_load((project / "configs" / "default.yaml").read_text())
    assert cfg["metric"] == "qwk" and cfg["model"]["name"] == "/models/deberta"
    assert cfg["data"]["target_cols"] == ["content", "wording"] and cfg["data"]["text_cols"] == ["prompt", "answer"]
    assert cfg["train"]["n_folds"] == 4 and cfg["data"]["max_len"] == 512


@pytest.mark.parametrize("answers, message", [
    (dict(project_slug="Bad Slug"), "project_slug"),
    (dict(project_slug="ok", package_name="9lives"), "package_name"),
    (dict(project_slug="ok", problem="regression", metric="accuracy"), "does not apply to regression"),
    (dict(project_slug="ok", metric="bleu"), "metric 'bleu'"),
    (dict(project_slug="ok", n_folds="1"), "n_folds"),
    (dict(project_slug="ok", image_size="big"), "image_size"),
    (dict(project_slug="ok", problem="binary", target_cols="a,b"), "one target column"),
    (dict(project_slug="ok", target_cols="a b"), "target_cols"),
])
def test_pre_gen_hook_rejects_bad_answers(tmp_path, answers, message):
    args = [f"{k}={v}" for k, v in answers.items()]
    out = subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(tmp_path), *args],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_choice_outside_the_list_is_rejected(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(tmp_path),
                          "task=video"], capture_output=True, text=True)
    assert out.returncode != 0 and "task" in out.stderr
    assert list(tmp_path.iterdir()) == []
