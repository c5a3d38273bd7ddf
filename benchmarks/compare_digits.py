"""The README's main table: `lowerbound compare` with every registered family on digits, the same
training budget each, its files copied to benchmarks/results/compare-digits/ with a screenshot of
compare.html taken by headless Chromium (the system's, through Playwright; none is downloaded).

    python benchmarks/compare_digits.py [--minutes 1] [--families all] [--out runs/compare-digits-1min]

The run directories stay under --out (ignored by git); rerunning skips finished families and
resumes an interrupted one, so a budget too long for one sitting can be run in parts.  Measured on
a shared 2-core CPU: time-budgeted numbers under load are pessimistic, and the JSON says the load.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from common import RESULTS, machine
from lowerbound.compare import CompareConfig, compare, entries_for

FILES = ("compare.json", "compare.md", "compare.html", "bars.png", "curves.png")


def screenshot(html: Path, png: Path, width: int = 1300, height: int = 900) -> Path | None:
    """The top of the page (table and bar chart) as a PNG; None without playwright or chromium."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if executable is None:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(png))
        browser.close()
    return png


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--families", default="all")
    ap.add_argument("--out", default=None, help="run directories (default runs/compare-digits-<M>min)")
    ap.add_argument("--results", default=str(RESULTS / "compare-digits"))
    args = ap.parse_args(argv)
    out = Path(args.out or f"runs/compare-digits-{args.minutes:g}min")
    cfg = CompareConfig(out=str(out), data="digits", entries=entries_for(args.families, "digits"),
                        minutes=args.minutes)
    compare(cfg)
    dest = Path(args.results)
    (dest / "samples").mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (out / name).is_file():
            shutil.copy(out / name, dest / name)
    for grid in (out / "samples").glob("*.png"):
        shutil.copy(grid, dest / "samples" / grid.name)
    shot = screenshot(dest / "compare.html", dest / "screenshot.png")
    print((dest / "compare.md").read_text())
    print(f"machine at the end: {machine(torch.get_num_threads())}; screenshot: {shot}")


if __name__ == "__main__":
    main()
