"""compare.json, compare.md and compare.html from the comparison's records (written through io).

The table has one row per entry (per family, unless a comparison names variants): the test value
in the data set's unit with its per-example standard error (and the standard error across seeds
when there are several), its estimator and whether it is exact, the tighter estimate beside it, the
terms, parameters, training throughput, wall-clock seconds, steps, and sample metrics where the
eval room computed them.  Pictures: bits/dim as stacked terms with error bars (io.bars), every
run's validation bound against its training clock on one plot (io.curves), one sample grid per
entry (each run's own samples/*.png, copied to OUT/samples/).  The HTML page inlines all of it (io.html).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from ..io import html as html_io
from ..io.bars import Bar, plot_bars
from ..io.checkpoint import atomic_write_bytes, atomic_write_text
from ..io.curves import plot_xy
from .score import validation_curve

HEADERS = ["model", "{metric}", "± per example", "± across seeds", "estimator", "tighter estimate",
           "terms", "parameters", "examples/s", "train seconds", "steps", "sample metrics (test)"]


def _num(v: Any, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _count(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _terms(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in row.get("terms", {}).items()) or "-"


def _tight(row: dict[str, Any]) -> str:
    t = row.get("tight")
    return "-" if not t else f"{_num(t['value'])} ± {_num(t['stderr'])} ({t['estimator']})"


def _estimator(row: dict[str, Any]) -> str:
    if row["value"] is None:
        return "no likelihood (implicit model)"
    if row["exact"]:
        return row["estimator"] if row["estimator"] == "exact" else f"{row['estimator']} (exact)"
    return f"{row['estimator']} (upper bound)"


SHOWN = {"frechet_distance": "FD", "kid": "KID", "precision": "precision", "recall": "recall"}


def _samples(row: dict[str, Any]) -> str:
    """The headline sample metrics (eval.sample_quality's dict) with their stderrs; all are in the JSON."""
    m = row.get("sample_metrics")
    if not m:
        return "-"
    parts = []
    for key, label in SHOWN.items():
        v = m.get(key)
        se = (m.get("stderr") or {}).get(key)
        if isinstance(v, dict):  # KID: mean and stderr over subsets
            v, se = v.get("mean"), v.get("stderr")
        if isinstance(v, (int, float)):
            parts.append(f"{label} {v:.3g}" + (f" ± {se:.2g}" if isinstance(se, (int, float)) else ""))
    return ", ".join(parts) or ", ".join(f"{k} {v}" for k, v in m.items() if isinstance(v, (int, float)))


def _fd(row: dict[str, Any]) -> float | None:
    v = (row.get("sample_metrics") or {}).get("frechet_distance")
    return v if isinstance(v, (int, float)) else None


def table_cells(row: dict[str, Any]) -> list[html_io.Cell]:
    """The row's cells, each with its sort key (numbers sort as numbers, missing ones last)."""
    label = row["name"] if row["name"] == row["family"] else f"{row['name']} ({row['family']})"
    tight = row.get("tight")
    return [html_io.Cell(label, label),
            html_io.Cell(_num(row["value"]) if row["value"] is not None else "no likelihood", row["value"]),
            html_io.Cell(_num(row.get("example_stderr")), row.get("example_stderr")),
            html_io.Cell(_num(row.get("seed_stderr")), row.get("seed_stderr")),
            html_io.Cell(_estimator(row), _estimator(row)),
            html_io.Cell(_tight(row), tight["value"] if tight else None),
            html_io.Cell(_terms(row), _terms(row)),
            html_io.Cell(_count(row.get("parameters")), row.get("parameters")),
            html_io.Cell(_count(row.get("examples_per_s")), row.get("examples_per_s")),
            html_io.Cell(_num(row.get("wall_seconds"), 1), row.get("wall_seconds")),
            html_io.Cell(_count(row.get("steps")), row.get("steps")),
            html_io.Cell(_samples(row), _fd(row))]


def metric_name(rows: list[dict[str, Any]]) -> str:
    return next((r["metric"] for r in rows if r.get("metric")), "bits/dim")


def headers(rows: list[dict[str, Any]]) -> list[str]:
    return [h.format(metric=f"test {metric_name(rows)}") for h in HEADERS]


def plots(out: Path, rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[tuple[str, Path]]:
    """bars.png and curves.png in `out`; (caption, path) of those drawn."""
    metric = metric_name(rows)
    stack = metric != "KL to truth (nats)"  # the terms add up to the bound, not to the KL
    bars = [Bar(r["name"], r["value"], r.get("stderr") or 0.0, r.get("terms", {}) if stack else {},
                (r["tight"]["value"], r["tight"]["stderr"] or 0.0, r["tight"]["estimator"])
                if r.get("tight") else None) for r in rows]
    what = "the default estimator's terms stacked" if stack else "the default estimator"
    figures = [(f"Test {metric}: {what}, the error bar its standard error; "
                "diamonds: the tighter estimator of the same weights.",
                plot_bars(out / "bars.png", bars, ylabel=metric, title=f"test {metric}"))]
    series, unit = {}, ""
    for r in records:
        u, seconds, values = validation_curve(Path(r["run_dir"]))
        if seconds:
            label = r["name"] if all(q["seed"] == 0 for q in records) else f"{r['name']} seed {r['seed']}"
            series[label], unit = (seconds, values), u
    if series:
        ylabel = "validation bits/dim" if unit == "bpd" else "validation bound (nats)"
        figures.append(("Validation bound of every gradient-trained run against its training clock "
                        "(fitted models have no curve).",
                        plot_xy(out / "curves.png", series, xlabel="training seconds", ylabel=ylabel,
                                title="validation bound against wall-clock time")))
    return figures


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average": [round(v, 2) for v in load] if load else None}


def summary_lines(meta: dict[str, Any]) -> list[str]:
    load = meta["machine"].get("load_average")
    return [f"Data: {meta['data']}, every model scored on the same test split; weights chosen on a "
            "validation tenth of train, never on test. Each gradient-trained model had the same "
            f"{meta['minutes']:g}-minute training budget on this machine ({meta['machine']['cores']} "
            f"cores, load average {load[0] if load else '?'} at the end): a short budget measured "
            "under shared load is pessimistic.",
            "Every number is an upper bound on -log P(x) unless its estimator is exact; ± per example "
            "is the standard error over test examples."]


def write_all(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]],
              records: list[dict[str, Any]]) -> dict[str, Path]:
    """Write compare.json, compare.md (+ bars.png, curves.png) and compare.html; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    figures = plots(out, rows, records)
    gallery = [(r["name"], _copy_grid(out, r)) for r in rows if r.get("samples_png")]
    paths = {"json": out / "compare.json", "md": out / "compare.md", "html": out / "compare.html"}
    atomic_write_text(paths["json"], json.dumps({**meta, "runs": records, "entries": rows}, indent=2) + "\n")
    atomic_write_text(paths["md"], markdown(meta, rows, figures, gallery, out))
    page = html_io.Page(title=f"lowerbound compare: {meta['data']}", headers=headers(rows),
                        rows=[table_cells(r) for r in rows], intro=summary_lines(meta), figures=figures,
                        gallery=gallery, notes=meta.get("notes", []))
    html_io.write(paths["html"], page)
    return paths


def _copy_grid(out: Path, row: dict[str, Any]) -> Path:
    """The entry's sample grid copied to OUT/samples/NAME.png, so that the comparison's own files
    (compare.md and its pictures) can be kept or committed without the run directories."""
    path = out / "samples" / f"{row['name']}.png"
    data = Path(row["samples_png"]).read_bytes()
    atomic_write_bytes(path, data)
    return path


def markdown(meta, rows, figures, gallery, out: Path) -> str:
    lines = [f"# lowerbound compare: {meta['data']}", "", *[p + "\n" for p in summary_lines(meta)]]
    head = headers(rows)
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(c.text.replace("|", "\\|") for c in table_cells(r)) + " |" for r in rows]
    lines += [""] + [n + "\n" for n in meta.get("notes", [])]
    for caption, path in figures + gallery:
        lines += [f"![{caption}]({os.path.relpath(path, out)})", ""]
    return "\n".join(lines)
