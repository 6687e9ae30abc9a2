"""python -m <package> <stage> [--exp NAME] [key=value ...]

Stages: check, folds, train, predict, submit, config, demo-data.
Each stage is also its own module: python -m <package>.<stage>.
"""
from __future__ import annotations

import importlib
import sys

STAGES = {"check": "data", "folds": "folds", "train": "train", "predict": "predict", "submit": "submit",
          "config": "config", "demo-data": "demo_data"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in STAGES:
        print(__doc__.replace("<package>", __package__), file=sys.stderr)
        raise SystemExit(0 if len(sys.argv) < 2 else 2)
    module = importlib.import_module(f"{__package__}.{STAGES[sys.argv[1]]}")
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
