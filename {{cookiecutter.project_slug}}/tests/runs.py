"""Finished runs written by hand: the files train + predict leave in outputs/<exp>/, from given predictions, so
tests of post-processing and of the leaderboard's noise columns need no training."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import mod

config, files, splits, metrics, labels = (mod("core.config"), mod("data.files"), mod("data.splits"),
                                          mod("core.metrics"), mod("core.labels"))


class Competition:
    """The demo competition's targets, label map, folds and test answers, for writing fake runs."""

    def __init__(self, overrides: list[str], solution: Path):
        self.overrides = overrides
        self.cfg = config.load("demo", overrides)
        self.id_col, self.problem = self.cfg.data.id_col, self.cfg.problem
        self.train = files.load_train(self.cfg)
        self.label_map = labels.LabelMap.fit(self.problem, self.cfg.data.target_cols, self.train, self.id_col)
        self.folds = splits.load_or_make_folds(self.cfg, self.train, self.label_map)
        self.fold = self.folds["fold"].to_numpy()
        self.y = self.label_map.encode(self.train, self.id_col)
        sol = pd.read_csv(solution, dtype={self.id_col: str})
        self.test_ids, self.y_test = sol[self.id_col], self.label_map.encode(sol, self.id_col, "solution.csv")
        self.rng = np.random.default_rng(0)

    def noisy(self, y, signal: float, noise: float, shift: float = 0.0):
        """Predictions that know the truth with strength `signal`, blurred by noise; shift biases them (toward
        the first class / down for regression) so that post-processing has something to correct."""
        z = self.rng.standard_normal((len(y), self.label_map.n_outputs))
        if self.problem in ("binary", "multiclass"):
            logits = signal * np.eye(self.label_map.n_outputs)[y] + noise * z
            logits[:, 0] += shift
            e = np.exp(logits - logits.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        if self.problem == "multilabel":
            return 1 / (1 + np.exp(-(signal * (2 * y - 1) + noise * z - shift)))
        mean, std = np.array(self.label_map.mean), np.array(self.label_map.std)
        return mean + min(signal / 3, 1) * (y - mean) + noise * std * z - shift * std

    def frame(self, ids, preds):
        df = pd.DataFrame(preds, columns=self.label_map.pred_cols)
        df.insert(0, self.id_col, ids.to_numpy())
        return df

    def run(self, name: str, oof, test=None, metric: str | None = None, folds: pd.DataFrame | None = None) -> Path:
        """outputs/<name>/ as train + predict leave it, with these OOF (and test) predictions."""
        run = Path("outputs") / name
        run.mkdir(parents=True)
        cfg = dataclasses.replace(self.cfg, exp=name, metric=metric or self.cfg.metric)
        folds = self.folds if folds is None else folds
        fold = folds["fold"].to_numpy()
        (run / "config.yaml").write_text(config.dump(cfg))
        self.label_map.save(run / "labels.json")
        folds.to_csv(run / "folds.csv", index=False)
        self.frame(self.train[self.id_col], oof).to_csv(run / "oof_preds.csv", index=False)
        test = self.noisy(self.y_test, 2.0, 1.0) if test is None else test
        self.frame(self.test_ids, test).to_csv(run / "test_preds.csv", index=False)
        ks = sorted(set(fold.tolist()))
        on = lambda rows: metrics.score(cfg.metric, self.problem, self.y[rows], oof[rows])  # noqa: E731
        cv = {"kind": "kfold", "metric": cfg.metric, "cv": on(np.ones(len(fold), bool)), "folds_run": ks,
              "folds": [on(fold == k) for k in ks], "n_folds": len(ks),
              "greater_is_better": metrics.METRICS[cfg.metric].greater_is_better}
        (run / "cv.json").write_text(json.dumps(cv))
        return run
