"""compare room (design.md): every family on one data set, one table, one page a person opens.

    lowerbound compare --data digits --families all --minutes 5 --out runs/compare-digits

`compare(cfg)` trains each entry through the training runtime (plan.py: same budget, resumable run
directories), scores every run on the same test split (score.py) and writes compare.json,
compare.md and a self-contained compare.html (report.py).  It never trains by itself: training is
`lowerbound.train.run`, scoring is `lowerbound.eval`, every file goes through `lowerbound.io`.
Scores are cached in OUT/scores.json by run directory and weights, so a rerun only scores what is new.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io.checkpoint import atomic_write_text
from .plan import CompareConfig, Entry, entries_for, log, run_dirs, train_all
from .report import machine, write_all
from .score import aggregate, score_run

SCORES = "scores.json"


def _read_scores(out: Path) -> dict[str, Any]:
    path = out / SCORES
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a cache: recomputed when unreadable


def _existing(cfg: CompareConfig, taken: set[str]) -> list[tuple[str, Path]]:
    """(name, directory) of each --runs directory, named by its folder (made unique)."""
    out = []
    for d in cfg.runs:
        path = Path(d)
        if not (path / "config.json").is_file():
            raise UserError(f"--runs {d} is not a lowerbound run directory (it has no config.json).")
        name, i = path.name, 2
        while name in taken:
            name, i = f"{path.name}-{i}", i + 1
        taken.add(name)
        out.append((name, path))
    return out


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Train what is missing, score every run, write the three files; returns their paths and rows."""
    out = Path(cfg.out)
    existing = _existing(cfg, {e.name for e in cfg.entries})  # bad --runs refused before any training
    trained = train_all(cfg)
    scores = _read_scores(out)
    planned = [(e.name, path) for e, _, path in run_dirs(cfg)] + existing
    records = []
    for i, (name, path) in enumerate(planned, 1):
        key = str(path.resolve())
        cache = scores.setdefault(key, {})
        fresh = trained.get(path, {})
        if fresh.get("status") == "diverged":
            log(f"{name}: left out of the table, its training diverged ({fresh.get('error')}).")
            continue
        _seed_cache(cache, path, fresh)
        log(f"scoring [{i}/{len(planned)}] {name} on the test split")
        records.append(score_run(path, name=name, tight=cfg.tight, tight_samples=cfg.tight_samples,
                                 sample_n=cfg.sample_n, cache=cache, progress=cfg.progress))
        atomic_write_text(out / SCORES, json.dumps(scores, indent=1) + "\n")
    if not records:
        raise UserError("No run of the comparison could be scored.")
    names = dict.fromkeys(r["name"] for r in records)
    rows = [aggregate([r for r in records if r["name"] == name]) for name in names]
    meta = {"data": cfg.data, "data_options": cfg.data_options, "minutes": cfg.minutes, "seeds": cfg.seeds,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
            "metric": next((r["metric"] for r in rows if r.get("metric")), None),
            "notes": _notes(rows, cfg)}
    paths = write_all(out, meta, rows, records)
    log(f"wrote {paths['html']}")
    return {"paths": {k: str(v) for k, v in paths.items()}, "entries": rows, "runs": records}


def _seed_cache(cache: dict[str, Any], path: Path, fresh: dict[str, Any]) -> None:
    """A run trained just now already scored its test split with the default estimator (same
    weights, same split): keep that number rather than compute it twice."""
    from .score import weights_stamp

    if fresh.get("status") not in ("trained", "resumed"):
        return
    cache.clear()
    cache["stamp"] = weights_stamp(path)
    test = (fresh.get("splits") or {}).get("test")
    if test is not None:
        cache["default"] = test
    fit = fresh.get("fit") or {}
    cache["fit_seconds"] = fit.get("seconds", fresh.get("seconds")) if fresh.get("steps") == 0 else None


def _notes(rows: list[dict[str, Any]], cfg: CompareConfig) -> list[str]:
    notes = []
    if any(r["value"] is None for r in rows):
        notes.append("An implicit model (a GAN) has no likelihood: it is compared by its samples only.")
    if any(r.get("metric") == "KL to truth (nats)" for r in rows):
        notes.append("The data set knows its true density: KL(p_data || p_model) <= mean over test points "
                     "of log p_true(x) + bound(x), paired on the same points, replaces bits/dim; the "
                     "terms are those of the bound on -log p(x), in nats.")
    metrics = next((r["sample_metrics"] for r in rows if r.get("sample_metrics")), None)
    if metrics is None:
        notes.append("Sample metrics: not computed (" + ("--sample-n 0" if cfg.sample_n == 0 else
                     "the eval room offers no sample_quality") + ").")
    elif isinstance(metrics.get("feature_net"), dict):
        net = metrics["feature_net"]
        notes.append(f"Sample metrics: {metrics.get('n_samples')} fixed-seed samples per model against the "
                     f"{metrics.get('n_reference')} test examples, in the features of {net.get('name')} "
                     f"(test accuracy {net.get('test_accuracy')}); FD: Frechet distance, KID: kernel "
                     "inception distance; the full set with estimators is in compare.json.")
    return notes


__all__ = ["CompareConfig", "Entry", "compare", "entries_for"]
