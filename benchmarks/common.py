"""What every benchmark shares: train and score through `lowerbound.compare` (the one training loop,
the Trainer), report the machine it ran on, write JSON under benchmarks/results/.

A benchmark is a list of compare Entries (a name, a family, run options) plus the lines that turn
compare's records into its own JSON.  Its run directories live in runs/benchmarks/NAME/ (ignored by
git): rerunning a benchmark skips finished runs and resumes interrupted ones; delete the folder (or
pass --out) to measure afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from lowerbound.compare import CompareConfig, Entry, compare
from machine_info import cpu_model

RESULTS = Path(__file__).parent / "results"
RUNS = Path(__file__).resolve().parents[1] / "runs" / "benchmarks"

__all__ = ["Entry", "RESULTS", "estimate", "facts", "machine", "options", "parser", "run", "write"]


def parser(doc: str, minutes: float, name: str) -> argparse.ArgumentParser:
    """--minutes (training budget per entry), --threads, --out (run directories), --json (result path)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=minutes,
                    help=f"training budget per model (default {minutes})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None,
                    help=f"parent of the run directories (default runs/benchmarks/, as {name}-<minutes>min)")
    ap.add_argument("--json", default=str(RESULTS / f"{name}.json"), help="where the result JSON goes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a model option of every entry, e.g. --set dropout=0.2 (JSON values)")
    return ap


def options(sets: list[str]) -> dict[str, Any]:
    """--set key=value pairs as a model-options dict (values parsed as JSON where they parse)."""
    out = {}
    for item in sets:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def machine(threads: int) -> dict[str, Any]:
    """CPU model, cores, torch threads and the load average at the end: the machine is shared, so
    time-budgeted numbers measured under load are pessimistic."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "note": "a shared machine: time-budgeted numbers under load are pessimistic"}


def run(name: str, entries: list[Entry], args, *, data: str = "digits", data_options: dict | None = None,
        tight_samples: int | None = None, sample_n: int = 0) -> dict[str, Any]:
    """Train and score the entries through compare; returns compare's result (records by name too).
    Benchmarks of bounds skip sample metrics unless asked (sample_n > 0): an iterative sampler pays
    T network calls per sample."""
    torch.set_num_threads(args.threads)
    out = str(Path(args.out) / name) if args.out else str(RUNS / f"{name}-{args.minutes:g}min")
    cfg = CompareConfig(out=out, data=data, data_options=data_options or {}, entries=entries,
                        minutes=args.minutes, tight_samples=tight_samples, sample_n=sample_n)
    start = time.perf_counter()
    result = compare(cfg)
    result["by_name"] = {r["name"]: r for r in result["runs"]}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(Path(result["paths"]["md"]).read_text())
    return result


def facts(record: dict[str, Any]) -> dict[str, Any]:
    """steps, wall seconds and examples/s of a run's training (its metrics.csv)."""
    return {k: record[k] for k in ("steps", "wall_seconds", "examples_per_s")}


def estimate(e: dict[str, Any], key: str = "bits_per_dim") -> dict[str, Any]:
    """One estimate of a record (the record itself, or its "tight" part) as benchmarks report it."""
    return {"estimator": e["estimator"], key: e["value"], "stderr": e["stderr"],
            "estimator_stderr": (e.get("bound") or {}).get("estimator_stderr"), f"terms_{key}": e["terms"]}


def write(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
