"""After baking: check the `metric` answer and write the problem's default into configs/default.yaml when it
was auto, both from the package's own metric table (core/metric_table.py, the one home of that list); then
remove what the chosen task does not use (an image project keeps no text code and the reverse). A failure
exits 1 and cookiecutter deletes the half-made project."""
import re
import shutil
import sys
from pathlib import Path

TASK = "{{ cookiecutter.task }}"
PROBLEM = "{{ cookiecutter.problem }}"
METRIC = "{{ cookiecutter.metric }}"
PACKAGE = Path("src") / "{{ cookiecutter.package_name }}"
ONLY_FOR = {
    "image": [PACKAGE / "modality" / "image.py", PACKAGE / "modality" / "augment.py", PACKAGE / "demo" / "image.py",
              PACKAGE / "eda" / "image.py", PACKAGE / "reporting" / "image.py",
              PACKAGE / "training" / "tricks" / "mixing.py",
              PACKAGE / "modality" / "image_cache.py",
              Path("tests") / "test_image.py", Path("tests") / "test_mixing.py", Path("tests") / "test_image_cache.py",
              Path("tests") / "test_image_model.py"],
    "text": [PACKAGE / "modality" / "text.py", PACKAGE / "modality" / "text_model.py", PACKAGE / "modality" / "lora.py",
             PACKAGE / "modality" / "buckets.py", PACKAGE / "demo" / "text.py", PACKAGE / "eda" / "text.py",
             PACKAGE / "pretrain", Path("tests") / "test_text.py", Path("tests") / "test_text_recipes.py",
             Path("tests") / "test_pretrain.py", Path("tests") / "test_buckets.py"],
}


def metric_table() -> dict:
    table: dict = {}
    path = PACKAGE / "core" / "metric_table.py"
    exec(compile(path.read_text(), str(path), "exec"), table)  # pure data, no imports
    return table


def resolved_metric(table: dict) -> str:
    if METRIC == "auto":
        return table["DEFAULT_METRIC"][PROBLEM]
    metrics = table["METRIC_TABLE"]
    if METRIC not in metrics:
        sys.exit(f"cookiecutter: invalid answer: metric {METRIC!r} must be auto or one of {', '.join(metrics)}")
    if PROBLEM not in metrics[METRIC][0]:
        ok = [m for m, (problems, _) in metrics.items() if PROBLEM in problems]
        sys.exit(f"cookiecutter: invalid answer: metric {METRIC!r} does not apply to {PROBLEM}; "
                 f"choose auto or {', '.join(ok)}")
    return METRIC


config, readme = Path("configs") / "default.yaml", Path("README.md")
metric = resolved_metric(metric_table())
config.write_text(re.sub(r"^metric: \S+", f"metric: {metric}", config.read_text(), count=1, flags=re.M))
readme.write_text(readme.read_text().replace("__DEFAULT_METRIC__", metric))

for task, paths in ONLY_FOR.items():
    if task == TASK:
        continue
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
