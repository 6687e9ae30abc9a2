"""The package is in layers whose imports only point down, read from the code itself with `ast`:

    stages (one per make target: check.py, train.py, ensemble/, ...)
       -> inference, training, reporting   (inference may use training; reporting: the HTML pages, below the
                                            stages so train and ensemble write them at their end)
          -> data, modality            (data may use modality: the pre-flight checks every image / text)
             -> core                   (imports nothing of the package outside core/)

Every import counts, at the top of a module or inside a function. A stage never imports another stage,
and no module imports itself back through others (a cycle).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import PKG_NAME, PROJECT

LAYERS = {"core": 0, "data": 1, "modality": 1, "training": 2, "inference": 2, "reporting": 2}
STAGE = 3
SIDEWAYS = {("data", "modality"), ("inference", "training")}  # allowed within a layer, in this direction only


def modules(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (function bodies included)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            root = base[:len(base) - node.level + 1] if node.level else []
            mod = ".".join(root + ([node.module] if node.module else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]  # `from . import x`: x may be a module
        else:
            continue
        for t in targets:
            while t and t not in known:  # pkg.core.rundir.RunPaths -> pkg.core.rundir
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def unit(name: str) -> str:
    """The layer sub-package or stage a module belongs to: pkg.training.kfold -> training, pkg.ensemble.blend
    -> ensemble, pkg.train -> train; the package itself and __main__ (the table of stages) -> ''."""
    parts = name.split(".")[1:]
    return "" if not parts or parts[0] == "__main__" else parts[0]


def rank(u: str) -> int:
    return LAYERS.get(u, STAGE)


def violations(src: Path, package: str) -> list[str]:
    known = modules(src, package)
    graph = {m: imported(m, p, known) for m, p in known.items()}
    found = []
    for a, targets in graph.items():
        for b in sorted(targets):
            ua, ub = unit(a), unit(b)
            if ua == ub or ua == "" or ub == "":
                continue
            if rank(ub) > rank(ua):
                found.append(f"upward import: {a} ({ua}) imports {b} ({ub})")
            elif rank(ua) == rank(ub) == STAGE:
                found.append(f"stage imports a stage: {a} imports {b}")
            elif rank(ua) == rank(ub) and (ua, ub) not in SIDEWAYS:
                found.append(f"sideways import not allowed: {a} ({ua}) imports {b} ({ub})")
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_only_point_down_no_stage_imports_a_stage_and_there_is_no_cycle():
    assert violations(PROJECT / "src", PKG_NAME) == []


def test_core_imports_nothing_of_the_package_outside_core():
    known = modules(PROJECT / "src", PKG_NAME)
    outside = {m: sorted(t for t in imported(m, p, known) if unit(t) != "core")
               for m, p in known.items() if unit(m) == "core"}
    assert {m: t for m, t in outside.items() if t} == {}


def test_every_make_target_of_the_stage_table_is_a_module_or_folder_of_its_own():
    stages = __import__(f"{PKG_NAME}.__main__", fromlist=["STAGES"]).STAGES
    src = PROJECT / "src" / PKG_NAME
    for target, module in stages.items():
        if module == "pretrain" and not (src / "pretrain").exists():
            continue  # text projects only
        assert (src / f"{module}.py").is_file() or (src / module / "__init__.py").is_file(), target
        assert module not in LAYERS, f"make {target} is a layer, not a stage"


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"core/__init__.py": "", "core/a.py": "def f():\n    from ..training import loop\n",
      "training/__init__.py": "", "training/loop.py": ""}, "upward import: pkg.core.a (core) imports pkg.training.loop (training)"),
    ({"train.py": "from .predict import run\n", "predict.py": "def run(): pass\n"},
     "stage imports a stage: pkg.train imports pkg.predict"),
    ({"modality/__init__.py": "", "modality/x.py": "from ..data import files\n", "data/__init__.py": "",
      "data/files.py": ""}, "sideways import not allowed: pkg.modality.x (modality) imports pkg.data.files (data)"),
    ({"core/__init__.py": "", "core/a.py": "from .b import x\n", "core/b.py": "def g():\n    from . import a\n"},
     "import cycle: pkg.core.a -> pkg.core.b -> pkg.core.a"),
])
def test_the_checker_catches_each_kind_of_violation(tmp_path, files, expected):
    assert expected in violations(_write(tmp_path, {"__init__.py": "", **files}), "pkg")
