"""Every experiment in outputs/ in one table: CV, metric, kind, date, wall time, and what its config changed.

    python -m <package>.leaderboard [--base EXP] [paths.outputs=DIR]
    python -m <package> leaderboard --base exp001
    make leaderboard [BASE=exp001]

An experiment is a folder outputs/<exp>/ with cv.json (train, make ensemble, full fits). Rows are grouped
by metric and sorted best first in that metric's direction (metrics.METRICS). The last column lists the
config keys (dotted, as in ARGS) whose values differ from the base: --base EXP compares with that
experiment's saved config.yaml; without it, with configs/default.yaml, so each row says what the
experiment changed. exp, overwrite and train.progress never count as differences.

kind: kfold | full_fit (cv.json "full_fit": the CV shown is its k-fold source's) | ensemble (cv.json
"method") | pseudo (config pseudo.base set). Folders without cv.json but with config.yaml or
pretrain.json (an unfinished or failed run, an MLM pretraining) are listed below the table, unscored.
The table is printed as markdown and written to outputs/leaderboard.csv.

Noise (with --base): for each experiment on the base's folds (the same folds.csv: ids and fold ids), the
per-fold paired differences of the fold scores to the base (fold_deltas), their mean (delta) and standard
error over folds (delta_se), and a 95% paired bootstrap interval of the difference on the OOF rows both
ran (ci_low, ci_high; 1000 resamples of rows, seeded; core/noise.py). within_noise is yes when the interval
contains 0. delta is experiment minus base in the metric's units (for a loss, negative is better). Other
folds, no OOF of its own (a full fit), another metric or label map: the columns stay empty and noise_note
says why. cv_post: the out-of-fold post-processed CV (post.method), when the run has one.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .core.atomic import write_csv
from .core.cli import run_stage
from .core.config import CONFIG_DIR, flatten, load, parse_overrides, read_yaml, to_dict
from .core.errors import ConfigError, DataError
from .core.labels import LabelMap
from .core.metrics import METRICS
from .core.noise import fold_deltas, paired_bootstrap
from .core.rundir import leaderboard_csv, outputs_root
from .core.tables import read_table
from .data.files import load_train

IGNORED = {"exp", "overwrite", "train.progress"}  # differ between runs by design, say nothing about the model
MAX_DIFFS = 8                                     # keys shown per row in the printed table (the CSV has all)
NOISE_COLS = ("delta", "delta_se", "fold_deltas", "ci_low", "ci_high", "within_noise", "noise_note")


def outputs_dir(overrides: list[str]) -> Path:
    """paths.outputs from the command line or configs/default.yaml, without resolving an experiment:
    the leaderboard also works in a folder holding only outputs/ (a notebook, a copied results folder)."""
    extra = sorted(set(flatten(parse_overrides(overrides))) - {"paths.outputs"})
    if extra:
        raise ConfigError(f"leaderboard takes only paths.outputs=<dir> (and --base EXP), not {extra}")
    return outputs_root(overrides)


def read_run(folder: Path) -> dict | None:
    """One experiment's row, or None for a folder that is no run (eda/, sanity_<exp>/)."""
    cv_file, config_file = folder / "cv.json", folder / "config.yaml"
    config = flatten(read_yaml(config_file)) if config_file.exists() else {}
    if not cv_file.exists():
        if config or (folder / "pretrain.json").exists():
            kind = "pretrain" if (folder / "pretrain.json").exists() else "no cv.json (unfinished?)"
            return {"exp": folder.name, "kind": kind, "config": config, "cv": math.nan}
        return None
    try:
        cv = json.loads(cv_file.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cv_file} is not valid JSON ({e}); delete it or re-run that experiment") from None
    kind = cv.get("kind", "?")  # "?": a run written before cv.json said its kind
    if kind == "full_fit":
        kind = f"full_fit of {cv.get('cv_source', '?')}"
    elif kind == "pseudo":
        kind = f"pseudo from {config.get('pseudo.base', '?')}"
    # a finish time recorded by the stage wins over the file's mtime (copied folders get new mtimes)
    finished = cv.get("finished") or cv.get("end_time")
    date = str(finished) if finished else time.strftime("%Y-%m-%d %H:%M", time.localtime(cv_file.stat().st_mtime))
    folds_run, n_folds = cv.get("folds_run", []), cv.get("n_folds", "?")
    folds = f"seeds {len(cv.get('seeds', []))}" if cv.get("kind") == "full_fit" else f"{len(folds_run)}/{n_folds}"
    metric = str(cv.get("metric", config.get("metric", "?")))
    greater = METRICS[metric].greater_is_better if metric in METRICS else bool(cv.get("greater_is_better", True))
    return {"exp": folder.name, "cv": float(cv.get("cv", math.nan)), "metric": metric, "greater": greater,
            "kind": kind, "folds": folds, "date": date, "wall_seconds": cv.get("wall_seconds", ""), "config": config,
            "cv_post": cv.get("cv_post", ""), "fold_scores": dict(zip(map(int, folds_run), cv.get("folds", [])))}


def differences(config: dict, base: dict) -> list[str]:
    """key=value of this run for every key whose value differs. Keys only one side has are a schema change
    between template versions, not an experiment's choice, so they are left out."""
    keys = sorted((set(config) & set(base)) - IGNORED)
    return [f"{k}={v if isinstance(v := config[k], str) else json.dumps(v)}" for k in keys if config[k] != base[k]]


def collect(outputs: Path) -> tuple[list[dict], list[dict]]:
    runs = [r for d in sorted(outputs.iterdir()) if d.is_dir() and (r := read_run(d)) is not None] \
        if outputs.is_dir() else []
    return [r for r in runs if "metric" in r], [r for r in runs if "metric" not in r]


def ranked(scored: list[dict]) -> list[dict]:
    """Grouped by metric (the most used first), best first within each; NaN scores last."""
    by_metric: dict[str, list[dict]] = {}
    for r in scored:
        by_metric.setdefault(r["metric"], []).append(r)
    out = []
    for metric in sorted(by_metric, key=lambda m: (-len(by_metric[m]), m)):
        rows = by_metric[metric]
        sign = -1.0 if rows[0]["greater"] else 1.0
        rows = sorted(rows, key=lambda r: (math.isnan(r["cv"]), sign * r["cv"] if not math.isnan(r["cv"]) else 0))
        out += [{**r, "rank": i + 1} for i, r in enumerate(rows)]
    return out


def oof_run(folder: Path, id_col: str, ids: pd.Series, cols: list[str]) -> tuple[np.ndarray, np.ndarray] | str:
    """(OOF rows in train order, fold ids in train order) of a run folder, or why it has none."""
    oof_file, folds_file = folder / "oof_preds.csv", folder / "folds.csv"
    if not oof_file.is_file() or not folds_file.is_file():
        return "no oof_preds.csv / folds.csv of its own (a full fit's CV is its source's)"
    oof = read_table(oof_file, dtype={id_col: str}).set_index(id_col)
    fold = read_table(folds_file, dtype={id_col: str}).set_index(id_col)["fold"]
    if set(oof.index) != set(ids) or set(fold.index) != set(ids) or list(oof.columns) != cols:
        return "its rows or columns are not the base's"
    return oof.loc[ids, cols].to_numpy(np.float64), fold.loc[ids].to_numpy()


def comparable(folder: Path, r: dict, b: dict | None, label_map: LabelMap, ids, mine) -> np.ndarray | str:
    """The experiment's OOF in train order when it can be paired with the base's, else why not."""
    if isinstance(mine, str):
        return mine
    if b is None:
        return "the base has no cv.json"
    if r["metric"] != b["metric"]:
        return f"metric {r['metric']}, the base's is {b['metric']}"
    labels = folder / "labels.json"
    if not labels.is_file() or LabelMap.load(labels) != label_map:
        return "no labels.json, or another label map than the base's"
    theirs = oof_run(folder, ids.name, ids, label_map.pred_cols)
    if isinstance(theirs, str):
        return theirs
    if not np.array_equal(theirs[1], mine[1]):
        return "other folds than the base (folds.csv differs)"
    return theirs[0]


def noise(outputs: Path, rows: list[dict], base: str) -> None:
    """Each row's NOISE_COLS against the base (see the module docstring), in place."""
    base_dir = outputs / base
    label_map = ids = y = None
    try:
        cfg = load(base, [], base=base_dir / "config.yaml")
        label_map = LabelMap.load(base_dir / "labels.json")
        train = load_train(cfg)
        y = label_map.encode(train, cfg.data.id_col, cfg.data.train_file)
        ids = train[cfg.data.id_col]
        mine = oof_run(base_dir, cfg.data.id_col, ids, label_map.pred_cols)
    except (ConfigError, DataError, OSError) as e:
        mine = f"the base's targets or OOF cannot be read ({e})"
    b = next(r for r in rows if r["exp"] == base) if any(r["exp"] == base for r in rows) else None
    for r in rows:
        r.update(dict.fromkeys(NOISE_COLS, ""))
        if r["exp"] == base:
            r.update(delta=0.0, within_noise="(base)")
            continue
        why = comparable(outputs / r["exp"], r, b, label_map, ids, mine)
        if isinstance(why, str):
            r["noise_note"] = why
            continue
        p, (q, fold) = why, mine
        deltas, mean, se = fold_deltas(r["fold_scores"], b["fold_scores"])
        common = sorted(set(r["fold_scores"]) & set(b["fold_scores"]))
        rows_ok = np.isin(fold, common) & ~np.isnan(p).any(1) & ~np.isnan(q).any(1)
        if not rows_ok.any():
            r["noise_note"] = "no OOF rows shared with the base"
            continue
        _, low, high = paired_bootstrap(r["metric"], label_map.problem, y[rows_ok], p[rows_ok], q[rows_ok])
        r.update(delta=mean, delta_se=se, fold_deltas=" ".join(f"{d:+.5f}" for d in deltas), ci_low=low,
                 ci_high=high, within_noise="yes" if low <= 0 <= high else "no" if np.isfinite(low) else "")


def noise_cells(r: dict) -> list[str]:
    if r["within_noise"] == "(base)":
        return ["0 (base)", "", "(base)"]
    if r["noise_note"] or r["delta"] == "":
        return ["", "", r["noise_note"] or ""]
    se = "" if math.isnan(r["delta_se"]) else f" ± {r['delta_se']:.5f}"
    return [f"{r['delta']:+.5f}{se}", f"[{r['ci_low']:+.5f}, {r['ci_high']:+.5f}]", r["within_noise"]]


def markdown(rows: list[dict], base_name: str, with_noise: bool = False) -> str:
    head = ["#", "exp", "cv", "metric", "kind", "folds", "date", "wall s", f"differs from {base_name}"]
    if with_noise:
        head[-1:-1] = ["delta (± se, folds)", "95% CI (rows)", "within noise"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        diffs = r["differs"]
        shown = ", ".join(diffs[:MAX_DIFFS]) + (f", ... ({len(diffs) - MAX_DIFFS} more)" if len(diffs) > MAX_DIFFS
                                                else "")
        cells = [r["rank"], r["exp"], "nan" if math.isnan(r["cv"]) else f"{r['cv']:.5f}", r["metric"],
                 r["kind"], r["folds"], r["date"], r["wall_seconds"], shown.replace("|", "\\|")]
        if with_noise:
            cells[-1:-1] = noise_cells(r)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def run(exp: str | None, overrides: list[str], base: str | None = None) -> pd.DataFrame | None:
    outputs = outputs_dir(overrides)
    scored, unscored = collect(outputs)
    if not scored and not unscored:
        print(f"no experiments in {outputs}/ yet: run `make train EXP=<name>` first")
        return None
    known = {r["exp"]: r for r in scored + unscored}
    if base is not None:
        if base not in known or not known[base]["config"]:
            names = ", ".join(sorted(k for k, r in known.items() if r["config"])) or "none"
            raise ConfigError(f"--base '{base}' is not an experiment with a config.yaml in {outputs}/; "
                              f"choose one of: {names}")
        base_config, base_name = known[base]["config"], base
    else:
        base_config = flatten(to_dict(load(config_dir=CONFIG_DIR))) if (CONFIG_DIR / "default.yaml").exists() else {}
        base_name = "configs/default.yaml" if base_config else "(no base)"
    rows = ranked(scored)
    for r in rows:
        r["differs"] = ["(base)"] if r["exp"] == base else differences(r["config"], base_config) if base_config \
            else []
    for r in rows:
        r.update(dict.fromkeys(NOISE_COLS, ""))
    if base is not None and rows:
        noise(outputs, rows, base)
    print(markdown(rows, base_name, base is not None) if rows else f"no finished experiment (cv.json) in {outputs}/")
    for r in unscored:
        print(f"- {r['exp']}: {r['kind']}, not ranked")
    table = pd.DataFrame([{k: r[k] for k in ("rank", "exp", "cv", "metric", "kind", "folds", "date",
                                             "wall_seconds")} | {"differs": "; ".join(r["differs"])}
                          | {k: r[k] for k in ("cv_post", *NOISE_COLS)} for r in rows])
    if rows:
        write_csv(leaderboard_csv(outputs), table)
        print(f"\n-> {leaderboard_csv(outputs)}")
    return table


def main(argv=None):
    run_stage(run, argv, options=("--base",))


if __name__ == "__main__":
    main()
