"""Write a small offline competition in Kaggle layout to data.dir, to try the pipeline end to end.

    python -m <package>.demo_data [--exp demo] [--rows N] [key=value ...]
    make demo-data            # then: make train predict submit EXP=demo

Image projects get scikit-learn's bundled digits as PNG files; text projects get a generated corpus
and a tiny BERT (random weights, WordPiece tokenizer trained on the corpus) in data.dir/tiny_bert.
Column names follow the config (data.id_col, data.target_cols, data.image_col / data.text_cols).
"""
from __future__ import annotations

import importlib
import sys

from .cli import run_stage
from .config import load


def _run(rows: int):
    def inner(exp, overrides):
        cfg = load(exp or "demo", overrides)
        gen = importlib.import_module(f"{__package__}.demo_{cfg.task}")
        out = gen.write_demo(cfg, rows)
        print(f"demo competition written to {out}")
    return inner


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    rows = 600
    if "--rows" in argv:
        i = argv.index("--rows")
        rows = int(argv[i + 1])
        del argv[i:i + 2]
    run_stage(_run(rows), argv)


if __name__ == "__main__":
    main()
