"""metrics.csv: one row per logged training step (design.md's run directory).

Columns are fixed by the first row written (step, time, examples/s, the loss and each term, grad
norm, lr, validation columns); later rows may leave columns empty.  Rows are flushed as they are
written, so a killed run loses at most the row being written, and `truncate_after(step)` drops the
rows a resumed run is about to write again (including a half-written last line).  A row that
cannot be written (full disk) is cut off again and raises a WriteError sentence; a file that is not
a metrics log (binary bytes, a row whose step is not an integer) is one UserError sentence.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..errors import UserError
from .files import WriteError, atomic_write_text, os_error_sentence


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)  # repr round-trips floats exactly
    return str(v)


class MetricsLog:
    """Append rows to path; the header is the columns of the first row, unless the file has one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] | None = None
        if self.path.is_file() and self.path.stat().st_size:
            rows = _csv(_text(self.path).splitlines()[:1], self.path)
            self.columns = rows[0] if rows and rows[0] else None

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (a dict of plain values); unknown keys after the first row are refused."""
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        extra = [k for k in row if k not in self.columns]
        if extra:
            raise ValueError(f"metrics row has columns not in the header: {extra}")
        out = io.StringIO()
        w = csv.writer(out)
        if new_file:
            w.writerow(self.columns)
        w.writerow([_fmt(row.get(c)) for c in self.columns])
        try:
            with open(self.path, "ab") as f:
                size = f.tell()
                try:
                    f.write(out.getvalue().encode("utf-8"))
                    f.flush()
                except OSError:
                    f.truncate(size)  # no half row is left behind
                    raise
        except OSError as e:
            raise WriteError(os_error_sentence(e, self.path), self.path) from None

    def truncate_after(self, step: int) -> None:
        """Keep the header and the complete rows with step <= `step`; drop the rest."""
        rows = read(self.path) if self.path.is_file() else []
        if self.columns is None:
            return
        kept = [r for r in rows if r.get("step") not in (None, "") and _int(r["step"], self.path) <= step]
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(self.columns)
        for r in kept:
            w.writerow([r.get(c, "") for c in self.columns])
        atomic_write_text(self.path, out.getvalue())


def _text(path: Path) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"The metrics log {path} is not text: byte {e.start} is not UTF-8.") from None


def _int(text: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"The metrics log {path} has a row whose step {text[:20]!r} is not an "
                        "integer.") from None


def _float(text: str, path: Path | str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"The metrics log {path} has a value {text[:20]!r} that is not a number.") from None


def read(path: Path) -> list[dict[str, str]]:
    """The complete rows of a metrics.csv as dicts of strings (a half-written last line is skipped)."""
    lines = _text(path).split("\n")
    complete = "\n".join(lines[:-1]) if lines and lines[-1] != "" else "\n".join(lines)
    table = _csv(complete.splitlines(), path)
    if not table or not table[0]:
        return []
    header = table[0]
    if "step" not in header:
        raise UserError(f"The metrics log {path} is not a lowerbound metrics log (its header has no step "
                        "column).")
    return [dict(zip(header, r)) for r in table[1:] if len(r) == len(header)]


def _csv(lines: list[str], path: Path) -> list[list[str]]:
    try:
        return list(csv.reader(lines))
    except csv.Error as e:
        raise UserError(f"The metrics log {path} is not a CSV file ({e}).") from None


def column(rows: list[dict[str, str]], name: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows where column `name` is filled."""
    steps, values = [], []
    for r in rows:
        if r.get(name, "") != "":
            steps.append(_int(r["step"], "metrics.csv"))
            values.append(_float(r[name], "metrics.csv"))
    return steps, values
