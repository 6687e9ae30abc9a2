"""Demo image competition: scikit-learn's bundled 8x8 digits, upscaled to 32x32 PNG files.

Targets by problem: multiclass = the digit's name ('zero'..'nine', string labels on purpose);
binary = 1 if the digit >= 5 else 0; multilabel = one 0/1 property of the digit per target column;
regression = the digit's value. Used by `make demo-data` and the tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PROPERTIES = [lambda d: d % 2 == 0, lambda d: d >= 5, lambda d: np.isin(d, [0, 6, 8, 9]), lambda d: d % 3 == 0]


def targets(problem: str, digits: np.ndarray, cols: list[str]) -> dict:
    if problem == "multiclass":
        return {cols[0]: [NAMES[d] for d in digits]}
    if problem == "binary":
        return {cols[0]: (digits >= 5).astype(int)}
    if problem == "multilabel":
        return {c: PROPERTIES[i % len(PROPERTIES)](digits).astype(int) for i, c in enumerate(cols)}
    return {c: digits.astype(float) * (i + 1) for i, c in enumerate(cols)}


def write_demo(cfg, rows: int) -> Path:
    out = Path(cfg.data.dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(digits.target))[:rows]
    ids = [f"img{i:05d}" for i in range(len(idx))]
    paths = []
    for name, i in zip(ids, idx):
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32), Image.NEAREST).save(out / "images" / f"{name}.png")
        paths.append(f"images/{name}.png")
    d = cfg.data
    df = pd.DataFrame({d.id_col: ids, d.image_col: paths, **targets(cfg.problem, digits.target[idx], d.target_cols)})
    n_test = len(df) // 5
    test, train = df.iloc[:n_test], df.iloc[n_test:]
    train.to_csv(out / d.train_file, index=False)
    test[[d.id_col, d.image_col]].to_csv(out / d.test_file, index=False)
    sample = test[[d.id_col] + list(d.target_cols)].copy()
    sample[list(d.target_cols)] = sample[list(d.target_cols)].iloc[0].to_numpy()  # placeholders
    sample.to_csv(out / d.sample_submission_file, index=False)
    test[[d.id_col] + list(d.target_cols)].to_csv(out / "solution.csv", index=False)
    return out
