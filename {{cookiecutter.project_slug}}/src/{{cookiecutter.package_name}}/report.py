"""make report: a run's results as one self-contained HTML page, or the leaderboard as one.

    make report EXP=exp001 [BASE=exp000] [ARGS="report.solution=solution.csv report.worst=20"]
    python -m <package> report --exp exp001 [--base exp000] [key=value ...]   # -> outputs/exp001/report.html
    make report                  # make leaderboard, then -> outputs/leaderboard.html (+ missing run pages)

The page opens offline, also from a copied folder (inline CSS and JS, plots as embedded PNGs). What it
shows and how: reporting/. make train and make ensemble refresh it at their end (report.auto).
"""
from __future__ import annotations

import time

from .core.cli import run_stage
from .core.rundir import outputs_root
from .reporting import leaderboard_page, run_page, stale_pages


def run(exp: str | None, overrides: list[str], base: str | None = None) -> None:
    outputs = outputs_root(overrides)
    t0 = time.time()
    if exp:
        page = run_page(outputs, exp, overrides, base)  # no lock: a running training may be watched
        print(f"-> {page} ({time.time() - t0:.1f}s)")
        return
    for name in stale_pages(outputs):  # every link of the leaderboard page leads somewhere
        print(f"-> {run_page(outputs, name, [o for o in overrides if o.startswith('paths.')])}")
    print(f"-> {leaderboard_page(outputs)} ({time.time() - t0:.1f}s)")


def main(argv=None):
    run_stage(run, argv, options=("--base",))


if __name__ == "__main__":
    main()
