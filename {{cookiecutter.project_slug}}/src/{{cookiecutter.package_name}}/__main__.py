"""python -m <package> <stage> [--exp NAME] [key=value ...]

Stages: check, folds, train, predict, pseudo, ensemble, submit, package, package-test, eda, sanity,
leaderboard, report, tune, config, demo-data, pretrain (text projects). `make X` runs stage X, whose code is <package>/X.py
or <package>/X/ (demo-data: demo/, package-test: rehearse.py). Each stage is also its own module: python -m <package>.<stage>.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

# make target / stage name -> module of the package
STAGES = {"check": "check", "folds": "folds", "train": "train", "predict": "predict", "submit": "submit",
          "pseudo": "pseudo", "ensemble": "ensemble", "pretrain": "pretrain", "config": "config",
          "demo-data": "demo", "eda": "eda", "sanity": "sanity", "leaderboard": "leaderboard",
          "package": "package", "package-test": "rehearse", "report": "report",
          "tune": "tune"}

TEXT_ONLY = {"pretrain"}  # masked-LM post-pretraining


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in STAGES:
        print(__doc__.replace("<package>", __package__), file=sys.stderr)
        raise SystemExit(0 if len(sys.argv) < 2 else 2)
    name = f"{__package__}.{STAGES[sys.argv[1]]}"
    if importlib.util.find_spec(name) is None:  # the bake hook keeps the modality's stages only
        print(f"error: stage '{sys.argv[1]}' is not part of this project"
              f"{' (text projects only)' if sys.argv[1] in TEXT_ONLY else ''}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(name)
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
