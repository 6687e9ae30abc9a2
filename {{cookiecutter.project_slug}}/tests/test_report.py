"""make report: a run's page and the leaderboard page, built from the run folder's files only; fast on 100k OOF
rows, explicit about missing pieces, and correct in a real browser (headless Chromium)."""
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import like_demo, mod, run_cli

config, labels = mod("core.config"), mod("core.labels")
SECTIONS = mod("reporting").SECTIONS
CHROMIUM = Path("/usr/bin/chromium")


def synthetic_run(workdir, demo_dir, tiny, exp, rows, kind="kfold", cv=True, oof=True, done=(0, 1, 2)):
    """outputs/<exp>/ as make train leaves it, for `rows` train rows resampled from the demo data (new ids)."""
    cfg = config.load("demo", tiny)
    rng = np.random.default_rng(0)
    data = workdir / f"data_{exp}"
    shutil.copytree(demo_dir, data, ignore=shutil.ignore_patterns("tiny_bert"))
    demo = pd.read_csv(demo_dir / "train.csv", dtype=str, keep_default_na=False)
    train = demo.iloc[rng.integers(0, len(demo), rows)].reset_index(drop=True)
    train[cfg.data.id_col] = [f"r{i}" for i in range(rows)]
    train.to_csv(data / "train.csv", index=False)
    cfg = config.load("demo", [*tiny, f"data.dir={data}", "train.n_folds=3"])
    cfg.exp = exp
    lm = labels.LabelMap.fit(cfg.problem, cfg.data.target_cols, train, cfg.data.id_col)
    y = lm.encode(train, cfg.data.id_col)
    if cfg.problem in ("binary", "multiclass"):
        logits = rng.normal(size=(rows, lm.n_outputs)) + 3 * np.eye(lm.n_outputs)[y]
        preds = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    elif cfg.problem == "multilabel":
        preds = 1 / (1 + np.exp(-(rng.normal(size=y.shape) + 3 * (2 * y - 1))))
    else:
        preds = y + rng.normal(scale=0.3, size=y.shape)
    run = workdir / "outputs" / exp
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.dump(cfg))
    lm.save(run / "labels.json")
    fold = np.arange(rows) % 3
    ids = train[cfg.data.id_col]
    pd.DataFrame({cfg.data.id_col: ids, "fold": fold}).to_csv(run / "folds.csv", index=False)
    frame = pd.DataFrame(preds, columns=lm.pred_cols).assign(**{cfg.data.id_col: ids})[[cfg.data.id_col, *lm.pred_cols]]
    hist = pd.DataFrame([dict(fold=k, epoch=e, train_loss=1 / e, valid_loss=1.2 / e, score=0.5 + e / 20, lr=1e-3 / e,
                              seconds=1.0) for k in done for e in range(1, 5)])
    hist.to_csv(run / "history.csv", index=False)
    for k in done:
        (run / f"fold{k}").mkdir()
        frame[fold == k].to_csv(run / f"fold{k}" / "oof.csv", index=False)
        (run / f"fold{k}" / "done.json").write_text(json.dumps({"score": 0.7, "best_epoch": 4, "rows": []}))
    if oof:
        frame.to_csv(run / "oof_preds.csv", index=False)
    if cv:
        (run / "cv.json").write_text(json.dumps({"kind": kind, "metric": cfg.metric, "cv": 0.7, "folds": [0.7] * 3,
                                                 "folds_run": [0, 1, 2], "n_folds": 3, "best_epochs": [4] * 3,
                                                 "wall_seconds": 9.5, "cv_source": "src"}))
    return run


def test_a_page_of_100k_oof_rows_is_built_in_seconds_with_every_section(tiny, workdir, demo_dir):
    run = synthetic_run(workdir, demo_dir, tiny, "big", 100_000)
    t0 = time.time()
    page = mod("reporting").run_page(workdir / "outputs", "big", [])
    took = time.time() - t0
    html = page.read_text()
    print(f"report of 100k OOF rows: {took:.1f}s, {len(html) / 1e6:.2f} MB")
    assert page == run / "report.html" and took < 30
    assert all(f'id="{s}"' in html for s in SECTIONS)
    assert "100000 OOF rows" in html and 'class="missing"' not in html.split('id="extras"')[0]
    assert len(html) < 3_000_000  # plots and thumbnails do not grow with the rows


def test_a_full_fit_and_a_half_finished_run_say_what_is_missing_instead_of_failing(tiny, workdir, demo_dir):
    synthetic_run(workdir, demo_dir, tiny, "full", 300, kind="full_fit", oof=False, done=())
    html = mod("reporting").run_page(workdir / "outputs", "full", []).read_text()
    assert "a full fit trains on every row" in html and "src" in html
    synthetic_run(workdir, demo_dir, tiny, "half", 300, cv=False, oof=False, done=(0,))
    html = mod("reporting").run_page(workdir / "outputs", "half", []).read_text()
    assert "the run has not finished" in html and "the finished folds [0]" in html
    assert "100 OOF rows" in html and all(f'id="{s}"' in html for s in SECTIONS)
    assert run_cli("report", "--exp", "nothing") == 2  # no run folder: one line, exit 2


def browser():
    if not CHROMIUM.is_file():
        print(f"skipped: {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser test")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    return sync_playwright


def check_page(context, path: Path) -> object:
    """Open a page from file://: no console error, every <img> decoded, every local link leads to a file or an id."""
    errors = []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    assert errors == []
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    for href in page.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))"):
        if href.startswith("#"):
            assert page.query_selector(href) is not None, href
        else:
            assert (path.parent / href).is_file(), href
    return page


def test_the_pages_load_in_chromium_images_decode_links_resolve_and_the_leaderboard_sorts(tiny, workdir, demo_dir,
                                                                                          capsys):
    sync_playwright = browser()
    synthetic_run(workdir, demo_dir, tiny, "exp_a", 600)
    synthetic_run(workdir, demo_dir, tiny, "exp_b", 600)
    (workdir / "outputs" / "exp_b" / "cv.json").write_text(json.dumps({"kind": "kfold", "metric": config.load(
        "demo", tiny).metric, "cv": 0.9, "folds": [0.9] * 3, "folds_run": [0, 1, 2], "n_folds": 3}))
    assert run_cli("leaderboard") == 0 and run_cli("report") == 0, capsys.readouterr().err
    outputs = workdir / "outputs"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(workdir / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = check_page(context, outputs / "exp_a" / "report.html")
            for s in SECTIONS:
                assert page.is_visible(f"section#{s}"), s
            # learning curves + the problem's figures: confusion, ROC/PR (binary) and reliability; one scatter per
            # regression target; ROC/PR and reliability for multilabel (image projects add thumbnails on top)
            cfg = config.load("demo", tiny)
            figures = {"binary": 4, "multiclass": 3, "multilabel": 3, "regression": 1 + len(cfg.data.target_cols)}
            assert page.evaluate("document.images.length") >= figures[cfg.problem]
            board = check_page(context, outputs / "leaderboard.html")
            cells = lambda: board.eval_on_selector_all("tbody tr td:nth-child(2)", "t => t.map(c => c.textContent)")  # noqa: E731
            before = cells()
            assert sorted(before) == ["exp_a", "exp_b"]
            board.click("th:nth-child(2)")
            first = cells()
            board.click("th:nth-child(2)")
            assert first == sorted(before) and cells() == sorted(before, reverse=True)
        finally:
            context.close()


def test_make_train_writes_the_report_at_its_end_and_a_failing_report_never_fails_the_training(tiny, workdir,
                                                                                               monkeypatch, capsys):
    like_demo("auto", "auto2")
    args = [*tiny, "report.auto=true", "train.epochs=1", "train.folds=[0]"]
    assert run_cli("train", "--exp", "auto", *args) == 0
    html = (workdir / "outputs" / "auto" / "report.html").read_text()
    assert all(f'id="{s}"' in html for s in SECTIONS) and "1 of 3 folds" in html

    def broken(*a, **k):
        raise RuntimeError("no plots today")
    monkeypatch.setattr(mod("reporting"), "run_page", broken)
    assert run_cli("train", "--exp", "auto2", *args) == 0
    assert (workdir / "outputs" / "auto2" / "cv.json").is_file()
    assert "the report of auto2 was not written (RuntimeError: no plots today)" in capsys.readouterr().err
