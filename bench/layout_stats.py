"""Size and import structure of a baked project's package: the figures of a before / after table.

    python bench/layout_stats.py path/to/baked_project [more projects ...]

Prints, per project: modules, total lines, the largest module and function (lines), functions over 60 lines,
import cycles (strongly connected groups of modules importing each other, function-level imports included)
and, when the project has tests/test_layers.py, the layer violations it reports.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path


def load_checker(project: Path):
    """The project's own import checker (tests/test_layers.py) when it has one, else this folder's copy."""
    path = project / "tests" / "test_layers.py"
    if not path.exists():
        (path,) = Path(__file__).resolve().parents[1].glob("*/tests/test_layers.py")  # the template's own
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("layers_checker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def stats(project: Path) -> dict:
    src = project / "src"
    package = next(p.parent.name for p in src.glob("*/__init__.py"))
    files = sorted((src / package).rglob("*.py"))
    sizes = {str(f.relative_to(src / package)): len(f.read_text().splitlines()) for f in files}
    funcs = [(f"{f.relative_to(src / package)}:{name}", n) for f in files for name, n in functions(ast.parse(f.read_text()))]
    checker = load_checker(project)
    known = checker.modules(src, package)
    graph = {m: checker.imported(m, p, known) for m, p in known.items()}
    has_layers = (project / "tests" / "test_layers.py").exists()
    module, lines = max(sizes.items(), key=lambda kv: kv[1])
    func, flines = max(funcs, key=lambda kv: kv[1])
    return {"modules": len(files), "lines": sum(sizes.values()), "largest module": f"{module} ({lines})",
            "largest function": f"{func} ({flines})", "functions over 60 lines": sum(n > 60 for _, n in funcs),
            "import cycles": len(checker.cycles(graph)),
            "layer violations": len(checker.violations(src, package)) if has_layers else "n/a (no layers)"}


def main() -> None:
    for arg in sys.argv[1:]:
        print(f"== {arg}")
        for key, value in stats(Path(arg)).items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
