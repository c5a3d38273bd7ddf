"""One record per run directory, and the spread of an entry across seeds.

Every run is scored on the same test split of the same data set with its family's default
estimator and, where the family names one (`tight_estimator`: a VAE's IWAE-1000, more draws of t
for VDM), the tighter one beside it.  Nothing is selected on test: the weights are the run's own
best-validation export.  Discrete data are scored in bits/dim; continuous data with a known density
by the KL to the truth, KL(p_data || p_model) <= mean_i[log p_true(x_i) + bound_i] (paired, nats),
which takes the place of bits/dim; other continuous data in nats.  An implicit model (a GAN) gets
"no likelihood" and, like every family, the sample metrics of `lowerbound.eval.sample_quality`
where the eval room offers them.  Steps, wall-clock seconds and throughput come from the run's own
metrics.csv.

Across S seeds an entry's value is the mean of its runs' values, with two standard errors side by
side: across seeds, std / sqrt(S), and the mean per-example standard error of one run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .. import eval as evaluation
from ..io import metrics as metrics_io
from ..train import runtime
from ..train.load import load_with_info
from ..train.report import plain
from ..train.run import load_dataset, scoring_seed, stored_config
from ..train.rundir import draw


def weights_stamp(run_dir: Path) -> list[int] | None:
    """(size, mtime) of the run's export: a cached score is reused only for the same weights."""
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        return None
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def metric_of(result: dict[str, Any]) -> tuple[str, float, float]:
    """(metric name, value, stderr) of a likelihood result: bits/dim, else KL to the truth, else nats."""
    if "bits_per_dim" in result:
        return "bits/dim", result["bits_per_dim"], result["stderr"]
    if result.get("kl_to_truth"):
        kl = result["kl_to_truth"]
        return "KL to truth (nats)", kl["value"], kl["stderr"]
    return "nats", result["nats"], result["stderr"]


def score_test(model, dataset, cfg, *, estimator: str | None = None, samples: int | None = None,
               device=None, progress: bool = False) -> dict[str, Any]:
    """The run's bound on the data set's test split (eval room), as a plain dict; the same Monte Carlo
    draws as the run's report.md and `lowerbound eval`, so all three agree."""
    res = evaluation.likelihood(model, dataset, "test", estimator=estimator, samples=samples,
                                batch_size=cfg.eval_batch_size, seed=scoring_seed(cfg),
                                progress=progress, device=device)
    return res.to_dict()


def sample_metrics(model, dataset, n: int) -> dict[str, Any] | None:
    """`lowerbound.eval.sample_quality` of n fixed-seed samples, or None where the eval room has none."""
    quality = getattr(evaluation, "sample_quality", None)
    if quality is None or n == 0 or not hasattr(model, "sample"):
        return None
    return plain(quality(draw(model, n), dataset, split="test"))


def training_facts(run_dir: Path, batch_size: int) -> dict[str, Any]:
    """steps, wall seconds of training (the loop's clock) and examples/s, from metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    rows = metrics_io.read(path) if path.is_file() else []
    if not rows:
        return {"steps": 0, "wall_seconds": None, "examples_per_s": None}
    steps, seconds = int(rows[-1]["step"]), float(rows[-1]["time"])
    return {"steps": steps, "wall_seconds": seconds,
            "examples_per_s": steps * batch_size / seconds if seconds > 0 else None}


def validation_curve(run_dir: Path) -> tuple[str, list[float], list[float]]:
    """(unit, seconds, validation bound) at the run's evaluations, from metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    rows = metrics_io.read(path) if path.is_file() else []
    for unit in ("bpd", "nats"):
        key = f"valid_{unit}"
        pts = [(float(r["time"]), float(r[key])) for r in rows if r.get(key, "") != ""]
        if pts:
            return unit, [p[0] for p in pts], [p[1] for p in pts]
    return "", [], []


def count_parameters(model) -> int:
    """Trainable parameters; for models kept in buffers (the classical baselines), the buffers."""
    n = sum(p.numel() for p in model.parameters())
    return n or sum(b.numel() for b in model.buffers() if b.is_floating_point())


def score_run(run_dir: Path, *, name: str, tight: bool, sample_n: int, cache: dict[str, Any],
              tight_samples: int | None = None, device: str = "auto",
              progress: bool = False) -> dict[str, Any]:
    """The record of one run directory.  `cache` (this run's entry of the comparison's scores file)
    holds scores already computed for the same weights and receives the new ones.  tight_samples
    replaces the samples of the family's tighter estimator."""
    run_dir = Path(run_dir)
    cfg = stored_config(run_dir)
    dev = runtime.pick_device(device)
    model, _ = load_with_info(run_dir, "best", dev)
    dataset = load_dataset(cfg)
    stamp = weights_stamp(run_dir)
    if cache.get("stamp") != stamp:
        cache.clear()
        cache["stamp"] = stamp
    record: dict[str, Any] = {
        "name": name, "family": cfg.family, "seed": cfg.seed, "run_dir": str(run_dir), "data": cfg.data,
        "has_likelihood": bool(getattr(model, "has_likelihood", True)), "parameters": count_parameters(model),
        **training_facts(run_dir, cfg.batch_size)}
    if record["wall_seconds"] is None:  # fitted models: the fit's own clock, else the training call's
        record["wall_seconds"] = cache.get("fit_seconds")
    chosen = getattr(model, "tight_estimator", None) if tight else None
    if chosen is not None and chosen[0] not in model.estimators:  # e.g. a flow on continuous data: exact
        chosen = None
    if chosen is not None and tight_samples is not None:
        chosen = (chosen[0], tight_samples)
    record.update(_likelihood_part(model, dataset, cfg, cache, chosen, dev, progress))
    if "sample_metrics" not in cache:
        cache["sample_metrics"] = sample_metrics(model, dataset, sample_n)
    record["sample_metrics"] = cache["sample_metrics"]
    record["samples_png"] = samples_png(run_dir)
    return record


def _likelihood_part(model, dataset, cfg, cache, chosen, dev, progress) -> dict[str, Any]:
    if not getattr(model, "has_likelihood", True):
        return {"metric": None, "value": None, "stderr": None, "estimator": "no likelihood", "exact": False,
                "terms": {}, "unit": None, "tight": None, "kl_to_truth": None, "bound": None}
    if "default" not in cache:
        cache["default"] = score_test(model, dataset, cfg, device=dev, progress=progress)
    result = cache["default"]
    metric, value, stderr = metric_of(result)
    out = {"metric": metric, "value": value, "stderr": stderr, "estimator": result["estimator"],
           "exact": result["exact"], "unit": result["unit"], "kl_to_truth": result.get("kl_to_truth"),
           "terms": {k: v["value"] for k, v in result["terms"].items()}, "tight": None,
           "bound": _bound(result)}
    if chosen is not None:
        key = f"tight:{chosen[0]}:{chosen[1]}"
        if key not in cache:
            cache[key] = score_test(model, dataset, cfg, estimator=chosen[0], samples=chosen[1], device=dev,
                                    progress=progress)
        t = cache[key]
        _, t_value, t_stderr = metric_of(t)
        out["tight"] = {"estimator": t["estimator"], "value": t_value, "stderr": t_stderr,
                        "exact": t["exact"], "bound": _bound(t),
                        "terms": {k: v["value"] for k, v in t["terms"].items()}}
    return out


def _bound(result: dict[str, Any]) -> dict[str, Any]:
    """The bound itself in its unit (bits/dim or nats per example), whatever the headline metric,
    with the share of its stderr due to the estimator's own randomness."""
    key = "bits_per_dim" if "bits_per_dim" in result else "nats"
    return {"value": result[key],
            "stderr": result["stderr"], "unit": result["unit"],
            "estimator_stderr": result.get("estimator_stderr")}


def samples_png(run_dir: Path) -> str | None:
    """The run's final sample grid (samples/final.png), else its latest one."""
    folder = Path(run_dir) / "samples"
    if (folder / "final.png").is_file():
        return str(folder / "final.png")
    grids = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return str(grids[-1]) if grids else None


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    t = torch.tensor(values, dtype=torch.float64)
    if len(values) < 2:
        return float(t.mean()), None
    return float(t.mean()), float(t.std() / math.sqrt(len(values)))


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """An entry's row from its runs (one per seed): means, the stderr across seeds and the mean
    per-example stderr.  One run: its own record, with seeds 1."""
    first = dict(records[0])
    first.update(seeds=len(records), seed_stderr=None, example_stderr=first.get("stderr"))
    if len(records) == 1 or first["value"] is None:
        return first
    value, seed_se = _mean_se([r["value"] for r in records])
    first.update(value=value, seed_stderr=seed_se,
                 example_stderr=sum(r["stderr"] for r in records) / len(records), stderr=seed_se,
                 terms={k: sum(r["terms"].get(k, 0.0) for r in records) / len(records)
                        for k in first["terms"]})
    for key in ("examples_per_s", "wall_seconds", "steps"):
        vals = [r[key] for r in records if r.get(key) is not None]
        first[key] = sum(vals) / len(vals) if vals else None
    if all(r.get("tight") for r in records):
        t_value, t_se = _mean_se([r["tight"]["value"] for r in records])
        first["tight"] = {**records[0]["tight"], "value": t_value, "stderr": t_se}
    first["run_dir"] = [r["run_dir"] for r in records]
    first["seed"] = [r["seed"] for r in records]
    return first
