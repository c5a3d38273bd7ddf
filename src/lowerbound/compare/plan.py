"""What a comparison trains: entries (a name, a family, its options), seeds, run directories, and
running them through the ordinary training runtime (design.md: compare never trains by itself).

Every entry is trained by `lowerbound.train.run` with the family's defaults and the same wall-clock
budget, in OUT/NAME (OUT/NAME-seedS with several seeds), so each run is an ordinary run directory:
rerunning the comparison skips a finished run (it has report.md, written last), resumes an
interrupted one from its latest checkpoint, and starts a missing one.  One progress line per run
and an estimate of the time left for the whole comparison go to stderr.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import data as datasets
from ..errors import UserError
from ..models import registry
from ..train import run as train_run
from ..train.guards import TrainingDiverged
from ..train.rundir import read_config

FINISHED = "report.md"  # the last file a run writes


@dataclass
class Entry:
    """One model of the comparison: a display name, a family, and a layer of run options (loop keys
    and a `model:` section, as in a YAML config) on top of the defaults."""

    name: str
    family: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareConfig:
    """data: a data set name; entries: what to train (see `entries_for`); minutes: the training
    budget of every gradient run; seeds: runs per entry (seed 0..S-1); runs: existing run
    directories scored as they are; sets: `key=value` overrides for every run (e.g. device=cpu);
    tight: also score the tighter estimator where a family has one (tight_samples: its number of
    samples in place of the family's, e.g. IWAE-100 for a quick look); sample_n: samples drawn for
    sample metrics (0: none; iterative samplers pay T network calls per sample)."""

    out: str
    data: str = "digits"
    data_options: dict[str, Any] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    minutes: float = 5.0
    seeds: int = 1
    runs: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    tight: bool = True
    tight_samples: int | None = None
    sample_n: int = 64
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise UserError(f"The budget --minutes must be positive, got {self.minutes}.")
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}.")
        if self.tight_samples is not None and self.tight_samples < 1:
            raise UserError(f"tight_samples must be at least 1, got {self.tight_samples}.")
        if self.sample_n < 0:
            raise UserError(f"sample_n must not be negative (0: no sample metrics), got {self.sample_n}.")
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise UserError(f"Two entries of the comparison share a name: {names}.")
        if not self.entries and not self.runs:
            raise UserError("Nothing to compare: name families to train or --runs to include.")


def entries_for(families: str, data: str, data_options: dict[str, Any] | None = None) -> list[Entry]:
    """'all' -> every registered family that can model `data` (a family that refuses the data's
    layout, e.g. a categorical model of continuous points, is left out with a line saying why);
    'vae,diffusion' -> those, each checked to exist."""
    if families.strip() == "all":
        ds = datasets.load(data, **(data_options or {}))
        chosen = []
        for name in registry.names():
            try:
                registry.build(name, {}, ds.levels, ds.shape)
            except UserError as e:
                log(f"{name} is left out: {e}")
                continue
            chosen.append(Entry(name, name))
        return chosen
    names = [f.strip() for f in families.split(",") if f.strip()]
    if not names:
        raise UserError("--families needs 'all' or a comma-separated list, e.g. vae,diffusion.")
    for name in names:
        registry.get(name)
    return [Entry(name, name) for name in dict.fromkeys(names)]


def run_dirs(cfg: CompareConfig) -> list[tuple[Entry, int, Path]]:
    """(entry, seed, run directory) of every run the comparison trains."""
    out = Path(cfg.out)
    return [(e, s, out / (e.name if cfg.seeds == 1 else f"{e.name}-seed{s}"))
            for e in cfg.entries for s in range(cfg.seeds)]


def state_of(run_dir: Path) -> str:
    """'finished', 'interrupted' (a config but no report) or 'new'."""
    if (run_dir / FINISHED).is_file():
        return "finished"
    if (run_dir / "config.json").is_file():
        return "interrupted"
    return "new"


def _layers(cfg: CompareConfig, entry: Entry, seed: int) -> list[dict[str, Any]]:
    budget = {"data": cfg.data, "data_options": cfg.data_options, "minutes": cfg.minutes,
              "steps": 10**9, "seed": seed}  # the time budget decides, as `train --minutes` does
    return [budget, entry.options]


def check_matches(run_dir: Path, entry: Entry, cfg: CompareConfig) -> None:
    """An existing run directory must hold this entry's family on this data set."""
    stored = read_config(run_dir)
    if stored.get("family") != entry.family or stored.get("data") != cfg.data:
        raise UserError(f"The run directory {run_dir} holds {stored.get('family')!r} on "
                        f"{stored.get('data')!r}, not {entry.family!r} on {cfg.data!r}; "
                        "choose another --out.")


def train_one(cfg: CompareConfig, entry: Entry, seed: int, run_dir: Path) -> dict[str, Any]:
    """Train, resume or skip one run; returns what training reported (empty when skipped) with
    'status' (trained, resumed, skipped, diverged) and 'seconds' (wall time of this call)."""
    state = state_of(run_dir)
    start = time.perf_counter()
    if state != "new":
        check_matches(run_dir, entry, cfg)
    if state == "finished":
        return {"status": "skipped", "seconds": 0.0}
    resume = state == "interrupted"
    family = None if resume else entry.family
    layers = [] if resume else _layers(cfg, entry, seed)
    train_cfg, path = train_run.configure(family, layers, list(cfg.sets), str(run_dir), resume)
    try:
        result = train_run.train(train_cfg, path, resume=resume, progress=cfg.progress)
    except TrainingDiverged as e:
        log(f"{entry.name} (seed {seed}) diverged: {e}")
        return {"status": "diverged", "error": str(e), "seconds": time.perf_counter() - start}
    return {**result, "status": "resumed" if resume else "trained", "seconds": time.perf_counter() - start}


def train_all(cfg: CompareConfig) -> dict[Path, dict[str, Any]]:
    """Every planned run, in order, with a line per run and the time left for the comparison
    (the budget of each gradient run still to train plus the mean overhead seen so far)."""
    planned = run_dirs(cfg)
    results: dict[Path, dict[str, Any]] = {}
    start, overhead = time.perf_counter(), []
    for i, (entry, seed, path) in enumerate(planned, 1):
        state = state_of(path)
        label = entry.name if cfg.seeds == 1 else f"{entry.name} seed {seed}"
        log(f"[{i}/{len(planned)}] {label}: {_doing(state, cfg.minutes)} in {path}")
        out = train_one(cfg, entry, seed, path)
        results[path] = out
        if out["status"] != "skipped":
            overhead.append(max(0.0, out["seconds"] - float(out.get("train_seconds") or 0.0)))
        left = [p for p in planned[i:] if state_of(p[2]) != "finished"]
        eta = len(left) * (60 * cfg.minutes + (sum(overhead) / len(overhead) if overhead else 0.0))
        log(f"[{i}/{len(planned)}] {label}: {out['status']} ({out['seconds']:.0f} s); "
            f"{time.perf_counter() - start:.0f} s so far, about {eta / 60:.1f} min of training left")
    return results


def _doing(state: str, minutes: float) -> str:
    return {"finished": "finished already, skipped", "interrupted": "resuming",
            "new": f"training ({minutes:g} min budget)"}[state]


def log(message: str) -> None:
    print(f"lowerbound compare: {message}", file=sys.stderr, flush=True)
