"""The run page's sections besides the OOF analysis: the headline, the learning curves, what an ensemble,
a pseudo or a TTA run adds, and the config keys that differ from the defaults (and from BASE)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.config import CONFIG_DIR, flatten, load, read_yaml, to_dict
from ..core.errors import ConfigError, DataError
from ..core.metrics import METRICS, score
from ..core.tables import read_table
from ..data.files import data_path
from .figures import curves
from .page import esc, img, missing, table
from .rundata import Run

IGNORED = {"exp", "overwrite", "train.progress"}  # as make leaderboard: they say nothing about the model


def test_score(run: Run) -> str:
    cfg, lm = run.cfg, run.label_map
    if not cfg.report.solution:
        return "not scored (report.solution=&lt;file&gt; names an answer key)"
    sol = Path(cfg.report.solution)
    sol = sol if sol.is_file() else data_path(cfg, cfg.report.solution)
    if not sol.is_file() or not run.paths.test_preds.is_file() or lm is None:
        what = sol if not sol.is_file() else run.paths.test_preds
        return esc(f"not scored: {what} is missing" + (" (make predict)" if what == run.paths.test_preds else ""))
    id_col = cfg.data.id_col
    try:
        truth = read_table(sol, dtype={id_col: str})
        preds = read_table(run.paths.test_preds, dtype={id_col: str}).set_index(id_col)
        y = lm.encode(truth, id_col, sol.name)
        s = score(cfg.metric, cfg.problem, y, preds.loc[truth[id_col], lm.pred_cols].to_numpy(np.float64))
    except (KeyError, DataError, ConfigError, ValueError) as e:
        return esc(f"not scored: {sol} does not match test_preds.csv ({str(e)[:200]})")
    return f'<span class="big">{s:.5f}</span> on {len(truth)} rows of {esc(sol)}'


def headline(run: Run) -> str:
    cv, rec, cfg = run.cv or {}, run.record or {}, run.cfg
    metric = cv.get("metric", cfg.metric)
    direction = "higher" if METRICS[metric].greater_is_better else "lower"
    folds = cv.get("folds_run", sorted(run.done))
    scores = cv.get("folds") or [run.done[k].get("score") for k in sorted(run.done)]
    best = cv.get("best_epochs") or [run.done[k].get("best_epoch") for k in sorted(run.done)]
    shown = f"{cv['cv']:.5f}" if "cv" in cv else "none yet"
    out = [missing(run.notes["cv"]) if "cv" in run.notes else "",
           f'<p>{esc(metric)} ({direction} is better): CV <span class="big">{shown}</span> &middot; kind '
           f'{esc(cv.get("kind", "?"))} &middot; test: {test_score(run)}</p>']
    if scores:
        s = np.asarray(scores, dtype=float)
        rows = [[k, float(v), b if b is not None else ""] for k, v, b in zip(folds, s, best + [None] * len(s))]
        out += [table(["fold", metric, "best epoch"], rows),
                f"<p>fold mean {np.nanmean(s):.5f}, std {np.nanstd(s):.5f}, spread (max - min) "
                f"{np.nanmax(s) - np.nanmin(s):.5f}; {len(s)} of {cv.get('n_folds', cfg.train.n_folds)} folds</p>"]
    git = rec.get("git") or {}
    facts = [["wall time (s)", cv.get("wall_seconds", rec.get("wall_seconds", "?"))],
             ["status", rec.get("status", "?")], ["started", rec.get("started", "?")], ["ended", rec.get("ended", "?")],
             ["git commit", f"{git.get('commit', 'no git')}{' (+ uncommitted changes, code.diff)' if git.get('dirty') else ''}"],
             ["command", rec.get("command", "? (no run.json)")]]
    return "".join(out) + table(["", ""], facts)


def learning_curves(run: Run) -> str:
    if run.history is None:
        return missing(run.notes.get("history", "no history"))
    best = {k: d.get("best_epoch") for k, d in run.done.items()}
    if not best and run.cv and run.cv.get("best_epochs"):
        best = dict(zip(run.cv.get("folds_run", []), run.cv["best_epochs"]))
    best = {k: (run.cfg.train.epochs if b == "swa" else b) for k, b in best.items()}
    note = "<p>one line per fold; stars: the epoch of each fold's best checkpoint</p>"
    return note + img(curves(run.history, run.cfg.metric, best), "learning curves")


def extras(run: Run) -> str:
    """Ensemble members, weights / coefficients, OOF correlation; pseudo rows per fold; CV with and without TTA."""
    cv, out = run.cv or {}, []
    if cv.get("kind") == "ensemble":
        members = cv.get("members", {})
        weights = cv.get("weights", {})
        out.append("<h3>Ensemble</h3>" + table(["member", f"CV {cv.get('metric', '')}", "weight"],
                                              [[m, s, weights.get(m, "")] for m, s in members.items()], sortable=True))
        out.append(f"<p>method {esc(cv.get('method'))}: out-of-fold CV {cv.get('cv', float('nan')):.5f}, fitted "
                   f"in-sample {cv.get('cv_in_sample', float('nan')):.5f}</p>")
        if cv.get("coefficients"):
            out.append("<details><summary>meta-model coefficients</summary><pre>"
                       + esc(json.dumps(cv["coefficients"], indent=1)[:20000]) + "</pre></details>")
        out.append(img(run.paths.corr_plot.read_bytes(), "members' OOF correlation") if run.paths.corr_plot.is_file()
                   else missing(f"no {run.paths.corr_plot.name}"))
    if cv.get("kind") == "pseudo" or run.cfg.pseudo.base:
        rows = []
        for k in sorted(run.done) or range(run.cfg.train.n_folds):
            f = run.paths.pseudo_labels(k)
            rows.append([k, len(read_table(f, usecols=[0])) if f.is_file() else "missing"])
        out.append(f"<h3>Pseudo-labels</h3><p>base experiment: {esc(run.cfg.pseudo.base or '?')}</p>"
                   + table(["fold", "pseudo rows"], rows))
    if "cv_no_tta" in cv:
        tta = cv.get("tta", {})
        rows = [["CV", cv["cv"], cv["cv_no_tta"]]] + [[f"fold {k}", a, b] for k, a, b in
                                                     zip(cv.get("folds_run", []), cv.get("folds", []),
                                                         cv.get("folds_no_tta", []))]
        out.append(f"<h3>Test-time augmentation</h3><p>views {esc(tta.get('views'))}, reduce {esc(tta.get('reduce'))}</p>"
                   + table(["", "with TTA", "without"], rows))
    return "".join(out) or missing("a plain k-fold run: no ensemble members, pseudo-labels or TTA'd OOF")


def config_diff(run: Run, base: str | None) -> str:
    mine = flatten(read_yaml(run.paths.config))
    default = flatten(to_dict(load(config_dir=CONFIG_DIR))) if (CONFIG_DIR / "default.yaml").exists() else {}
    cols = [("configs/default.yaml", default)]
    if base:
        base_file = Path(run.cfg.paths.outputs) / base / "config.yaml"
        if not base_file.is_file():
            raise ConfigError(f"BASE={base}: {base_file} does not exist; name a run folder of {run.cfg.paths.outputs}/")
        cols.append((base, flatten(read_yaml(base_file))))
    show = lambda v: v if isinstance(v, str) else json.dumps(v)  # noqa: E731
    keys = sorted(k for k in mine if k not in IGNORED and any(k in c and c[k] != mine[k] for _, c in cols))
    rows = [[k, show(mine[k]), *[show(c[k]) if k in c else "(absent)" for _, c in cols]] for k in keys]
    head = ["key", run.paths.exp, *[name for name, _ in cols]]
    return (table(head, rows, sortable=True) if rows else "<p>no key differs</p>") + \
        f'<p><a href="config.yaml">config.yaml</a> holds every key.</p>'
