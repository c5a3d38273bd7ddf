"""compare.html in a real browser: headless Chromium (Debian's package, never a downloaded one)
driven by Playwright for Python.  One table row per family, every image decoded, no console error,
a screenshot written; and the table sorts when a header is clicked."""

import shutil

import pytest

ROWS = "table.sortable tbody tr"
FIRST_CELLS = "rows => rows.map(r => r.cells[0].textContent)"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def page(tiny_comparison):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright for Python is not installed (pip install playwright)")
    executable = _chromium()
    if executable is None:
        pytest.skip("no system chromium on PATH (Debian: apt-get install chromium); no browser is downloaded")
    out, _ = tiny_comparison
    messages, errors = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.on("console", lambda m: messages.append(m))
            pg.on("pageerror", lambda e: errors.append(str(e)))
            # the page must need nothing from a network: refuse every request that is not the file
            pg.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                     else route.abort())
            pg.goto((out / "compare.html").resolve().as_uri())
            pg.wait_for_load_state("load")
            yield pg, messages, errors
        finally:
            browser.close()


def test_one_row_per_family_every_image_decoded_no_console_error(page, tiny_comparison, tmp_path):
    pg, messages, errors = page
    _, result = tiny_comparison
    names = [r["name"] for r in result["entries"]]
    cells = pg.eval_on_selector_all(ROWS, FIRST_CELLS)
    assert sorted(cells) == sorted(names) and len(cells) == 3
    widths = pg.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert len(widths) >= 2 + len(names)  # bar chart, curves, a sample grid per family
    assert all(done and w > 0 for done, w in widths), widths
    assert not errors, errors
    assert not [m.text for m in messages if m.type == "error"]
    shot = tmp_path / "compare.png"
    pg.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes().startswith(b"\x89PNG")


def test_clicking_a_header_sorts_the_rows_by_that_column(page, tiny_comparison):
    pg, _, errors = page
    _, result = tiny_comparison
    expected = [r["name"] for r in sorted(result["entries"], key=lambda r: r["value"])]
    pg.click("table.sortable th:nth-child(2)")
    shown = pg.eval_on_selector_all(ROWS, FIRST_CELLS)
    assert shown == expected
    pg.click("table.sortable th:nth-child(2)")  # again: descending
    shown = pg.eval_on_selector_all(ROWS, FIRST_CELLS)
    assert shown == expected[::-1]
    assert not errors
