"""The sections built from the OOF predictions: confusion matrix and per-class scores, ROC / PR, calibration,
regression residuals, and the worst examples (highest loss) with thumbnails or texts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from .figures import confusion, reliability, roc_pr
from .figures import regression as regression_png
from .page import esc, img, missing, table
from .rundata import Run

MAX_COLUMNS = 8      # ROC / calibration lines and regression targets drawn
MAX_CLASSES = 30     # confusion matrix: the most frequent classes beyond this


def classification(run: Run) -> str:
    lm, y, p = run.label_map, run.y, run.oof
    pred = p.argmax(1)
    keep = np.argsort(-np.bincount(y, minlength=lm.n_outputs))[:MAX_CLASSES]
    keep.sort()
    cm = skm.confusion_matrix(y, pred, labels=list(range(lm.n_outputs)))
    note = "" if lm.n_outputs <= MAX_CLASSES else f"<p>the {MAX_CLASSES} most frequent of {lm.n_outputs} classes</p>"
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=list(range(lm.n_outputs)),
                                                             zero_division=0)
    rows = [[c, float(prec[i]), float(rec[i]), float(f1[i]), int(sup[i])] for i, c in enumerate(lm.classes)]
    out = [f"<h3>Confusion matrix</h3>{note}", img(confusion(cm[np.ix_(keep, keep)], [lm.classes[i] for i in keep]),
                                                   "confusion matrix"),
           "<h3>Per class</h3>", table(["class", "precision", "recall", "F1", "rows"], rows, sortable=True)]
    if lm.problem == "binary":
        out += [curves_and_calibration([(lm.classes[1], (y == 1).astype(int), p[:, 1])])]
    else:
        conf, right = p.max(1), (pred == y).astype(int)
        out += ["<h3>Calibration of the top class</h3>", calibration([("top class", right, conf)])]
    return "".join(out)


def multilabel(run: Run) -> str:
    cols = run.label_map.pred_cols[:MAX_COLUMNS]
    items = [(c, run.y[:, j].astype(int), run.oof[:, j]) for j, c in enumerate(cols)]
    pred = (run.oof >= 0.5).astype(int)
    prec, rec, f1, sup = skm.precision_recall_fscore_support(run.y.astype(int), pred, zero_division=0)
    rows = [[c, float(prec[j]), float(rec[j]), float(f1[j]), int(sup[j])] for j, c in enumerate(run.label_map.pred_cols)]
    return ("<h3>Per column (threshold 0.5)</h3>" + table(["column", "precision", "recall", "F1", "positives"], rows,
                                                           sortable=True) + curves_and_calibration(items))


def curves_and_calibration(items: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    drawn = []
    for name, y, p in items:
        if len(np.unique(y)) < 2:
            continue  # one class only: no curve
        fpr, tpr, _ = skm.roc_curve(y, p)
        prec, rec, _ = skm.precision_recall_curve(y, p)
        drawn.append((name, (fpr, tpr, skm.roc_auc_score(y, p)), (rec, prec, skm.average_precision_score(y, p))))
    head = "<h3>ROC and precision-recall</h3>"
    body = img(roc_pr(drawn), "ROC and PR curves") if drawn else missing("every column holds one class only")
    return head + body + "<h3>Calibration</h3>" + calibration(items)


def calibration(items: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    drawn, rows = [], []
    for name, y, p in items:
        p = np.clip(p, 0, 1)
        true, pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
        counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
        counts = counts[counts > 0]
        drawn.append((name, pred, true, counts))
        rows.append([name, float(np.sum(counts / counts.sum() * np.abs(true - pred)))])
    return img(reliability(drawn), "reliability diagram") + table(["", "expected calibration error"], rows)


def regression(run: Run) -> str:
    out, rows = [], []
    for j, c in enumerate(run.label_map.pred_cols):
        y, p = run.y[:, j], run.oof[:, j]
        rows.append([c, skm.root_mean_squared_error(y, p), skm.mean_absolute_error(y, p), skm.r2_score(y, p)])
        if j < MAX_COLUMNS:
            out.append(img(regression_png(c, y, p), f"regression {c}"))
    return table(["target", "RMSE", "MAE", "R2"], rows) + "".join(out)


def row_losses(run: Run) -> np.ndarray:
    p, y, problem = run.oof, run.y, run.label_map.problem
    if problem in ("binary", "multiclass"):
        return -np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1))
    if problem == "multilabel":
        q = np.clip(p, 1e-15, 1 - 1e-15)
        return -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(1)
    return (((p - y) / np.asarray(run.label_map.std)) ** 2).mean(1)


def worst(run: Run, thumbnail=None) -> str:
    """thumbnail(path, side) -> <img> HTML in image projects (reporting/image.py); texts otherwise."""
    cfg, lm = run.cfg, run.label_map
    n = cfg.report.worst
    if n == 0:
        return missing("report.worst=0: no examples shown")
    loss = row_losses(run)
    top = np.argsort(-loss, kind="stable")[:n]  # only these rows' inputs are read
    head = ["id", "fold", "true", "predicted", "confidence", "loss", "input"]
    rows = []
    for i in top:
        r = run.train.iloc[i]
        if lm.problem in ("binary", "multiclass"):
            k = int(run.oof[i].argmax())
            true, predicted, conf = lm.classes[run.y[i]], lm.classes[k], float(run.oof[i, k])
        elif lm.problem == "multilabel":
            true = ", ".join(c for c, v in zip(lm.pred_cols, run.y[i]) if v) or "(none)"
            predicted = ", ".join(c for c, v in zip(lm.pred_cols, run.oof[i]) if v >= 0.5) or "(none)"
            conf = float(np.maximum(run.oof[i], 1 - run.oof[i]).min())
        else:
            true, predicted, conf = ", ".join(f"{v:.4g}" for v in run.y[i]), ", ".join(f"{v:.4g}" for v in run.oof[i]), ""
        if thumbnail is not None:
            shown = thumbnail(Path(cfg.data.dir) / str(r[cfg.data.image_col]), cfg.report.thumb)
        else:
            text = " | ".join(str(r[c]) for c in cfg.data.text_cols)
            cut = text[:cfg.report.text_chars] + ("..." if len(text) > cfg.report.text_chars else "")
            shown = esc(cut)
        fold = "" if run.fold is None else int(run.fold[i])
        rows.append([r[cfg.data.id_col], fold, true, predicted, conf, float(loss[i]), shown])
    what = "-log p(true class)" if lm.problem in ("binary", "multiclass") else \
        "mean binary cross-entropy" if lm.problem == "multilabel" else "mean squared standardised error"
    return f"<p>The {len(rows)} OOF rows of highest loss ({what}).</p>" + table(head, rows, sortable=True, raw={6})


def oof_section(run: Run) -> str:
    if run.oof is None:
        return missing(run.notes.get("oof", "no OOF predictions"))
    note = missing(run.notes["oof_partial"]) if "oof_partial" in run.notes else ""
    body = {"binary": classification, "multiclass": classification, "multilabel": multilabel,
            "regression": regression}[run.label_map.problem](run)
    return note + f"<p>{len(run.y)} OOF rows.</p>" + body
