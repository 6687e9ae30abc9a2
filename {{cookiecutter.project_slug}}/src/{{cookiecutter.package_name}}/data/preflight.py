"""Every check that can fail, before any expensive work: files -> labels -> folds -> layout -> inputs.

    make check EXP=exp001          # python -m <package> check: run them all, write nothing

`make train`, `make pseudo` and the full fit call load_all first, so a wrong column, a label that cannot
fill the sample's columns or an image that does not decode stops the run in seconds, not after hours.
"""
from __future__ import annotations

import pandas as pd

from ..core.labels import LabelMap
from ..core.schema import Config
from ..modality import get_modality
from .files import check_sample_ids, load_sample_submission, load_test, load_train
from .splits import check_fold_counts
from .submission import sample_layout


def load_all(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, LabelMap]:
    """train.csv, test.csv and the label map fitted on train, once every check has passed."""
    train = load_train(cfg)
    label_map = LabelMap.fit(cfg.problem, cfg.data.target_cols, train, cfg.data.id_col, cfg.data.train_file)
    check_fold_counts(cfg, train, label_map)
    test = load_test(cfg)
    label_map.check_known_labels(test, cfg.data.id_col, cfg.data.test_file)
    sample = load_sample_submission(cfg)
    check_sample_ids(cfg, test, sample)
    sample_layout(cfg, label_map, sample)  # the columns make submit will fill, known before training
    if cfg.data.check_inputs:
        mod = get_modality(cfg)
        mod.check_inputs(train, cfg.data.train_file)
        mod.check_inputs(test, cfg.data.test_file)
    return train, test, label_map
