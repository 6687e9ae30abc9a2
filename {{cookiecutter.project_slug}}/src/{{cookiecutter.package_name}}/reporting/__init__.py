"""The report pages: one self-contained HTML file per run and one for the leaderboard (make report).

    make report EXP=exp001 [BASE=exp000]    # -> outputs/exp001/report.html
    make report                             # make leaderboard, then -> outputs/leaderboard.html

Below the stages so that make train and make ensemble refresh a run's page at their end (report.auto)
without a stage importing a stage. A page reads only the run folder's files (and train.csv / the images
for the worst examples); a piece that is missing is named in its section, never a traceback.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..core.atomic import write_text
from ..core.errors import ConfigError
from ..core.rundir import RunPaths, leaderboard_csv, leaderboard_html
from ..core.tables import read_table
from .analysis import oof_section, worst
from .page import document, esc, missing, section, table
from .rundata import open_report_run
from .sections import config_diff, extras, headline, learning_curves

SECTIONS = ("headline", "curves", "oof", "worst", "extras", "config")


def run_page(outputs: Path, exp: str, overrides: list[str], base: str | None = None) -> Path:
    """Writes outputs/<exp>/report.html (atomically) and returns its path."""
    run = open_report_run(Path(outputs), exp, overrides)
    thumbnail = None
    if run.cfg.task == "image":
        from .image import thumbnail  # image projects only: the bake removes reporting/image.py from text ones
    worst_body = worst(run, thumbnail) if run.oof is not None else missing(run.notes.get("oof", "no OOF predictions"))
    parts = [section("headline", "Headline", headline(run)),
             section("curves", "Learning curves", learning_curves(run)),
             section("oof", "OOF predictions", oof_section(run)),
             section("worst", "Worst OOF examples", worst_body),
             section("extras", "Ensemble, pseudo-labels, TTA", extras(run)),
             section("config", "Config", config_diff(run, base))]
    up = '<p><a href="../leaderboard.html">leaderboard</a></p>' if leaderboard_html(outputs).is_file() else ""
    write_text(run.paths.report, document(f"{exp}: {run.cfg.task} / {run.cfg.problem}", parts, up))
    return run.paths.report


def leaderboard_page(outputs: Path) -> Path:
    """outputs/leaderboard.html from outputs/leaderboard.csv (make leaderboard): every column it has, sortable,
    each experiment linked to its report.html."""
    outputs = Path(outputs)
    csv = leaderboard_csv(outputs)
    if not csv.is_file():
        raise ConfigError(f"{csv} does not exist: run `make leaderboard` first (make report without EXP runs it)")
    board = read_table(csv, dtype={"exp": str})
    stale = [d.name for d in outputs.iterdir() if (d / "cv.json").is_file()
             and (d / "cv.json").stat().st_mtime > csv.stat().st_mtime]
    rows = []
    for r in board.itertuples(index=False):
        cells = list(r)
        i = list(board.columns).index("exp")
        page = outputs / cells[i] / "report.html"
        cells[i] = f'<a href="{esc(cells[i])}/report.html">{esc(cells[i])}</a>' if page.is_file() else esc(cells[i])
        rows.append(cells)
    body = table(list(board.columns), rows, sortable=True, raw={list(board.columns).index("exp")})
    note = missing(f"{csv.name} is older than the cv.json of {', '.join(sorted(stale))}: run make report (without "
                   f"EXP) to refresh") if stale else ""
    page = document("Leaderboard", [section("board", "Leaderboard", note + "<p>click a header to sort</p>" + body)])
    write_text(leaderboard_html(outputs), page)
    return leaderboard_html(outputs)


def stale_pages(outputs: Path) -> list[str]:
    """Experiments of outputs/ whose report.html is missing or older than their cv.json."""
    out = []
    for d in sorted(Path(outputs).iterdir()) if Path(outputs).is_dir() else []:
        cv, page = d / "cv.json", d / "report.html"
        if cv.is_file() and (d / "config.yaml").is_file() and (not page.is_file() or page.stat().st_mtime < cv.stat().st_mtime):
            out.append(d.name)
    return out


def refresh(paths: RunPaths, cfg) -> None:
    """report.auto at the end of make train / make ensemble: main process only; a failure is a warning, never
    the run's failure (the run's own files are all written by then)."""
    if not cfg.report.auto or int(os.environ.get("RANK", "0")) != 0:
        return
    log = logging.getLogger("run")
    t0 = time.time()
    try:
        page = run_page(Path(cfg.paths.outputs), paths.exp, [])
    except Exception as e:  # noqa: BLE001 - the run is finished; its report is a convenience
        log.warning(f"warning: the report of {paths.exp} was not written ({type(e).__name__}: {str(e)[:300]}); "
                    f"run make report EXP={paths.exp}")
        return
    log.info(f"report -> {page} ({time.time() - t0:.1f}s)")
