"""Write a small offline competition in Kaggle layout to data.dir, to try the pipeline end to end.

    make demo-data            # then: make train predict submit EXP=demo
    python -m <package> demo-data [--exp demo] [--rows N] [key=value ...]

Image projects get scikit-learn's bundled digits as PNG files; text projects get a generated corpus
and a tiny BERT (random weights, WordPiece tokenizer trained on the corpus) in data.dir/tiny_bert.
Column names follow the config (data.id_col, data.target_cols, data.image_col / data.text_cols).
"""
from __future__ import annotations

import importlib

from ..core.cli import run_stage
from ..core.config import load


def run(exp: str | None, overrides: list[str], rows: str | None = None) -> None:
    cfg = load(exp or "demo", overrides)
    gen = importlib.import_module(f"{__package__}.{cfg.task}")  # image.py | text.py: the baked one
    out = gen.write_demo(cfg, int(rows or 600))
    print(f"demo competition written to {out}")


def main(argv=None):
    run_stage(run, argv, options=("--rows",))


if __name__ == "__main__":
    main()
