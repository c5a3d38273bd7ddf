"""metrics.csv: one row per logged training step (design.md's run directory).

Columns are fixed by the first row written (step, time, examples/s, the loss and each term, grad
norm, lr, validation columns); later rows may leave columns empty.  Rows are flushed as they are
written, so a killed run loses at most the row being written, and `truncate_after(step)` drops the
rows a resumed run is about to write again (including a half-written last line).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any


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
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            self.columns = header or None

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (a dict of plain values); unknown keys after the first row are refused."""
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        extra = [k for k in row if k not in self.columns]
        if extra:
            raise ValueError(f"metrics row has columns not in the header: {extra}")
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new_file:
                w.writerow(self.columns)
            w.writerow([_fmt(row.get(c)) for c in self.columns])
            f.flush()

    def truncate_after(self, step: int) -> None:
        """Keep the header and the complete rows with step <= `step`; drop the rest."""
        rows = read(self.path) if self.path.is_file() else []
        if self.columns is None:
            return
        kept = [r for r in rows if r.get("step") not in (None, "") and int(r["step"]) <= step]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in kept:
                w.writerow([r.get(c, "") for c in self.columns])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def read(path: Path) -> list[dict[str, str]]:
    """The complete rows of a metrics.csv as dicts of strings (a half-written last line is skipped)."""
    with open(path, newline="") as f:
        lines = f.read().split("\n")
    complete = "\n".join(lines[:-1]) if lines and lines[-1] != "" else "\n".join(lines)
    reader = csv.reader(complete.splitlines())
    header = next(reader, None)
    if not header:
        return []
    return [dict(zip(header, r)) for r in reader if len(r) == len(header)]


def column(rows: list[dict[str, str]], name: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the rows where column `name` is filled."""
    steps, values = [], []
    for r in rows:
        if r.get(name, "") != "":
            steps.append(int(r["step"]))
            values.append(float(r[name]))
    return steps, values
