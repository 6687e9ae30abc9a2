"""Reject bad answers before anything is generated; each message names the variable and what to fix.

The `metric` answer is checked by the post-gen hook, against the baked package's own metric table
(src/<package>/core/metric_table.py): the one list of metrics, their problems and each problem's default.
"""
import re
import sys

ANSWERS = {
    "project_slug": "{{ cookiecutter.project_slug }}",
    "package_name": "{{ cookiecutter.package_name }}",
    "task": "{{ cookiecutter.task }}",
    "problem": "{{ cookiecutter.problem }}",
    "metric": "{{ cookiecutter.metric }}",
    "backbone": "{{ cookiecutter.backbone }}",
    "n_folds": "{{ cookiecutter.n_folds }}",
    "id_col": "{{ cookiecutter.id_col }}",
    "target_cols": "{{ cookiecutter.target_cols }}",
    "image_col": "{{ cookiecutter.image_col }}",
    "text_cols": "{{ cookiecutter.text_cols }}",
    "image_size": "{{ cookiecutter.image_size }}",
    "max_len": "{{ cookiecutter.max_len }}",
}
CLS = ("binary", "multiclass")


def check(a: dict) -> list:
    errors = []
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", a["project_slug"]):
        errors.append(f"project_slug {a['project_slug']!r} must start with a lowercase letter and hold only "
                      f"lowercase letters, digits, '-' and '_' (e.g. my_competition)")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", a["package_name"]) or a["package_name"] in ("test", "tests", "src"):
        errors.append(f"package_name {a['package_name']!r} must be a lowercase Python identifier (e.g. my_comp)")
    if a["task"] not in ("image", "text"):
        errors.append(f"task {a['task']!r} must be image or text")
    if a["problem"] not in ("binary", "multiclass", "multilabel", "regression"):
        errors.append(f"problem {a['problem']!r} must be binary, multiclass, multilabel or regression")
    if not a["backbone"].strip() or any(c.isspace() for c in a["backbone"]):
        errors.append(f"backbone {a['backbone']!r} must be auto, a model name, or a path without spaces")
    for key, low in (("n_folds", 2), ("image_size", 8), ("max_len", 8)):
        if not a[key].isdigit() or int(a[key]) < low:
            errors.append(f"{key} {a[key]!r} must be an integer >= {low}")
    name = re.compile(r"[^\s,:#\[\]{}'\"]+")
    for key in ("id_col", "image_col"):
        if not name.fullmatch(a[key]):
            errors.append(f"{key} {a[key]!r} must be one column name (no spaces, commas or YAML symbols)")
    for key in ("target_cols", "text_cols"):
        cols = [c.strip() for c in a[key].split(",")]
        if not all(name.fullmatch(c) for c in cols):
            errors.append(f"{key} {a[key]!r} must be column names separated by commas, e.g. a,b")
    if a["problem"] in CLS and "," in a["target_cols"]:
        errors.append(f"target_cols {a['target_cols']!r}: a {a['problem']} problem has one target column")
    return errors


if __name__ == "__main__":
    problems = check(ANSWERS)
    if problems:
        print("cookiecutter: invalid answer(s):\n  - " + "\n  - ".join(problems), file=sys.stderr)
        sys.exit(1)
