"""One self-contained HTML page: a sortable table, figures and image galleries, nothing fetched.

Every picture is read from disk and inlined as a `data:image/png;base64,...` URI, the styles and the
few lines of script that sort the table by a clicked column are inline too, so the page opens the
same from a mail attachment, a CI artifact or a machine without network.  Cells carry their sort
key (a number where there is one) in `data-sort`; empty keys sort last in both directions.
Takes plain values only; the compare room assembles them.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .checkpoint import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 90em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.num { text-align: right; white-space: nowrap; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 30em; }
img { max-width: 100%; image-rendering: pixelated; }
.gallery img { width: 12em; }
p.note { color: #555; font-size: 0.9em; }
"""

SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


@dataclass
class Cell:
    """Shown text and its sort key (a float sorts numerically; None sorts last)."""

    text: str
    sort: float | str | None = None


@dataclass
class Page:
    """title; intro and notes: paragraphs of plain text; headers and rows: the sortable table
    (cells are Cells or plain strings); figures: (caption, PNG path); gallery: (caption, PNG path)
    shown small side by side."""

    title: str
    headers: list[str]
    rows: list[list[Cell | str]]
    intro: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    gallery_title: str = "Samples"
    gallery: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def data_uri(path: str | Path) -> str:
    """The PNG at `path` as a data URI (refused if it is not a PNG: the page must decode it)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise UserError(f"The picture {path} is not a PNG file.")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _cell(c: Cell | str) -> str:
    c = c if isinstance(c, Cell) else Cell(c, c)
    key = c.sort
    if isinstance(key, float) and not math.isfinite(key):
        key = None
    sort = "" if key is None else (repr(float(key)) if isinstance(key, (int, float)) else str(key))
    attrs = ' class="num"' if isinstance(key, (int, float)) else ""  # numbers right-aligned
    return f'<td{attrs} data-sort="{html.escape(sort)}">{html.escape(c.text)}</td>'


def _figure(caption: str, path: Path) -> str:
    return (f'<figure><img src="{data_uri(path)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(page: Page) -> str:
    """The page as one HTML string."""
    for row in page.rows:
        if len(row) != len(page.headers):
            raise UserError(f"A table row has {len(row)} cells for {len(page.headers)} columns.")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(page.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(page.title)}</h1>"]
    out += [f"<p>{html.escape(p)}</p>" for p in page.intro]
    out.append('<table class="sortable"><thead><tr>'
               + "".join(f'<th scope="col">{html.escape(h)}</th>' for h in page.headers)
               + "</tr></thead><tbody>")
    out += ["<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in page.rows]
    out.append("</tbody></table>")
    out += [f'<p class="note">{html.escape(n)}</p>' for n in page.notes]
    out += [_figure(caption, path) for caption, path in page.figures]
    if page.gallery:
        out.append(f'<h2>{html.escape(page.gallery_title)}</h2><div class="gallery">')
        out += [_figure(caption, path) for caption, path in page.gallery]
        out.append("</div>")
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"


def write(path: str | Path, page: Page) -> Path:
    """Render and write atomically; returns the path."""
    atomic_write_text(Path(path), render(page))
    return Path(path)
