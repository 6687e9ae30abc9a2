"""make check: run every input check on the competition files and write nothing.

    make check EXP=exp001 [ARGS="data.dir=..."]      # python -m <package> check --exp exp001

Columns, ids, labels, fold counts, the sample submission's layout, and every image / text (data.preflight).
"""
from __future__ import annotations

from .core.cli import run_stage
from .core.config import load
from .data.preflight import load_all


def run(exp: str | None, overrides: list[str]) -> None:
    cfg = load(exp, overrides)
    train, test, label_map = load_all(cfg)
    print(f"ok: {len(train)} train rows, {len(test)} test rows, outputs {label_map.pred_cols[:10]}")


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
