"""make folds: the k-fold assignment of this data set, written once and shared by every experiment on it.

    make folds EXP=exp001            # python -m <package> folds --exp exp001; make train does it when needed

The strategy (grouped, multilabel-stratified, stratified on quantile bins for regression) and the file
name: data/splits.py.
"""
from __future__ import annotations

from .core.cli import run_stage
from .core.config import load
from .core.labels import LabelMap
from .data.files import load_train
from .data.splits import folds_file, load_or_make_folds


def run(exp: str | None, overrides: list[str]) -> None:
    cfg = load(exp, overrides)
    train = load_train(cfg)
    label_map = LabelMap.fit(cfg.problem, cfg.data.target_cols, train, cfg.data.id_col, cfg.data.train_file)
    folds = load_or_make_folds(cfg, train, label_map)
    print(f"{folds_file(cfg)}: {len(folds)} rows, fold sizes {folds['fold'].value_counts().sort_index().tolist()}")


def main(argv=None):
    run_stage(run, argv)


if __name__ == "__main__":
    main()
