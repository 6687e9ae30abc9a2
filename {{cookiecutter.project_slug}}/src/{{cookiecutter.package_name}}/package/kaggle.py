"""The Kaggle side of a bundle: wheels, the inference script and notebook, the dataset and kernel metadata, the
manifest. Nothing here reads a run; package/__init__.py decides what goes in.

Wheels: the project is built from a copy of its pyproject.toml and src/ (the project folder stays clean), with
pip and no build isolation when setuptools is installed; package.extra_wheels are local .whl files (copied)
or names pip downloads now, as binary wheels for this machine's Python and platform (a Kaggle image with
another Python needs files built for it: give those as local .whl files).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..core.errors import ConfigError
from ..core.records import file_list

SCRIPT = Path(__file__).with_name("script.py")
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,48}$")


def slug(name: str) -> str:
    """Kaggle's dataset / kernel slug of a bundle name: lower case, hyphens."""
    return name.lower().replace("_", "-")


def check_name(name: str) -> None:
    if not SLUG.match(name):
        raise ConfigError(f"bundle name {name!r} (NAME=) must be 1-49 letters, digits, '-' or '_', starting with a "
                          f"letter or digit: it becomes a folder and a Kaggle dataset id")


def _pip(args: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise ConfigError(f"{what}: pip failed ({lines[-1].strip() if lines else done.returncode})")


def build_wheels(project: Path, extra: list[str], out: Path) -> list[str]:
    """The project's wheel and package.extra_wheels into out; their file names."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in extra:  # first: a name that cannot be fetched fails before the slower build
        if entry.endswith(".whl"):
            if not Path(entry).is_file():
                raise ConfigError(f"config key 'package.extra_wheels': {entry} is not a file")
            shutil.copy2(entry, out / Path(entry).name)
        else:
            _pip(["download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(out), entry],
                 f"config key 'package.extra_wheels': cannot fetch {entry!r}")
    with tempfile.TemporaryDirectory(prefix="wheel_build_") as tmp:
        shutil.copy2(project / "pyproject.toml", tmp)
        shutil.copytree(project / "src", Path(tmp) / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                            "*.egg-info"))
        # the installed setuptools when there is one; else pip fetches it (a network is still there)
        no_isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
        _pip(["wheel", "--quiet", "--no-deps", *no_isolation, "--wheel-dir", str(out), tmp],
             f"building the project's wheel from {project / 'pyproject.toml'}")
    return sorted(p.name for p in out.glob("*.whl"))


def script_text(bundle: str, package: str) -> str:
    """inference.py: script.py with the bundle's name and the package filled in."""
    text = SCRIPT.read_text()
    for key, value in (("BUNDLE", bundle), ("PACKAGE", package)):
        line = f'{key} = ""'
        if line not in text:  # pragma: no cover - script.py and this function are edited together
            raise RuntimeError(f"{SCRIPT} lost its line {line!r}")
        text = text.replace(line, f"{key} = {value!r}", 1)
    return text


def notebook_text(script: str) -> str:
    """inference.ipynb: the script's `# %%` sections as cells (its docstring as the first, in markdown), the
    last one calling main([]) (a notebook's sys.argv holds the kernel's own arguments)."""
    import nbformat
    head, *sections = script.split("\n# %%\n")
    doc = head.strip().strip('"').strip()
    cells = [nbformat.v4.new_markdown_cell(doc)]
    cells += [nbformat.v4.new_code_cell(s.strip()) for s in sections[:-1]]
    cells.append(nbformat.v4.new_code_cell("record = main([])\nrecord"))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nbformat.writes(nb)


def owner(given: str) -> str:
    return given or os.environ.get("KAGGLE_USERNAME", "") or "your-kaggle-username"


def dataset_metadata(name: str, user: str, licence: str) -> dict:
    return {"title": f"{name} inference bundle"[:50], "id": f"{user}/{slug(name)}",
            "licenses": [{"name": licence}]}


def kernel_metadata(name: str, user: str, competition: str, gpu: bool) -> dict:
    return {"id": f"{user}/{slug(name)}-inference", "title": f"{name} inference"[:50],
            "code_file": "inference.ipynb", "language": "python", "kernel_type": "notebook",
            "is_private": True, "enable_gpu": gpu, "enable_tpu": False, "enable_internet": False,
            "dataset_sources": [f"{user}/{slug(name)}"],
            "competition_sources": [competition] if competition else [], "kernel_sources": [],
            "model_sources": []}


def manifest(root: Path, info: dict, versions: dict) -> dict:
    files = file_list(root)
    return {**info, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": sys.version.split()[0], "versions": versions,
            "total_bytes": sum(f["bytes"] for f in files), "files": files}


def write_json_file(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
