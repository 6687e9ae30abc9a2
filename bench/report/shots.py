"""Screenshots of make report's pages (bench/report/*.png), through the system's Chromium.

    python bench/report/shots.py OUT_PNG PAGE_HTML [OUT_PNG PAGE_HTML ...]

A full-page screenshot at half scale, so each PNG stays small enough for the README to link.
"""
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(pairs):
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(), executable_path="/usr/bin/chromium",
                                                   headless=True, args=ARGS, viewport={"width": 1250, "height": 900},
                                                   device_scale_factor=0.5)
        for out, page_file in zip(pairs[::2], pairs[1::2]):
            page = ctx.new_page()
            page.goto(Path(page_file).resolve().as_uri())
            page.screenshot(path=out, full_page=True)
            print(out, Path(out).stat().st_size // 1024, "KB")
        ctx.close()


if __name__ == "__main__":
    main(sys.argv[1:])
