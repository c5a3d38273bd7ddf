"""What the `eval` and `sample` commands do with a finished (or running) run directory, and the
text table the `train` and `eval` commands print.

Both use the best-validation export unless `checkpoint="last"` is asked, and score exactly the
splits training saw: the validation split is rebuilt from the run's seed.  Without a seed, eval draws
the same Monte Carlo randomness as the run's final scoring (same seed, same batch size), so its test
number is exactly the one report.md shows; `seed=S` draws other randomness.  Sampling into the run
directory takes the run's lock, so it waits for no training and is refused while one writes there.
"""

from __future__ import annotations

import io
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..io import report as report_io
from ..io.files import atomic_write_bytes
from ..io.lock import RunLock
from . import runtime
from .load import load_with_info
from .run import load_dataset, scoring_seed, split_train_valid, stored_config
from .rundir import read_config, save_picture, stderr_log
from .scoring import summarize_split

SPLITS = ("test", "valid", "train")
NO_LIKELIHOOD = "no likelihood"
IMPLICIT_SAMPLES = 1000  # samples scored by default for a model that has only samples


def evaluate_run(run_dir: str | Path, split: str = "test", *, estimator: str | None = None,
                 samples: int | None = None, checkpoint: str = "best", batch_size: int | None = None,
                 seed: int | None = None, device: str = "auto", progress: bool = True,
                 samples_for_metrics: int | None = None, options: dict | None = None) -> dict[str, Any]:
    """The bound of a run's model on one split: value, stderr, interval, terms, estimator; with
    samples_for_metrics = N, also `sample_metrics` of N samples against that split.  A model without
    a likelihood (a GAN) reports "no likelihood" and its sample metrics (N = 1000 by default).
    options: the estimator's own (e.g. {"rtol": 1e-4} for ode)."""
    if split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; choose one of: {', '.join(SPLITS)}.")
    for name, value in (("batch size", batch_size), ("number of samples", samples)):
        if value is not None and value < 1:
            raise UserError(f"The {name} must be at least 1, got {value}.")
    run_dir = Path(run_dir)
    cfg = stored_config(run_dir)
    dev = runtime.pick_device(device)
    model, info = load_with_info(run_dir, checkpoint, dev)
    implicit = not getattr(model, "has_likelihood", True)
    if implicit and (estimator is not None or samples is not None):
        raise UserError(f"The {cfg.family} model has no likelihood, so it has no bound estimator; "
                        f"`lowerbound eval` reports its sample metrics instead.")
    if samples_for_metrics is not None and samples_for_metrics < 2:
        raise UserError(f"--samples-for-metrics needs at least 2 samples, got {samples_for_metrics}.")
    if info.get("warning"):
        stderr_log(info["warning"])
    if estimator is not None and estimator not in getattr(model, "estimators", (estimator,)):
        raise UserError(f"The {cfg.family} model has no estimator {estimator!r}; choose one of: "
                        f"{', '.join(model.estimators)}.")
    dataset = load_dataset(cfg)
    train_x, valid_x = split_train_valid(dataset.train, cfg.valid_fraction, cfg.seed)
    x = {"test": None, "valid": valid_x, "train": train_x}[split]
    if x is not None and len(x) == 0:
        raise UserError(f"The run in {run_dir} has no {split} split (valid_fraction is 0).")
    if implicit:
        result: dict[str, Any] = {"split": split, "likelihood": NO_LIKELIHOOD, "model": cfg.family}
        samples_for_metrics = samples_for_metrics or IMPLICIT_SAMPLES
    else:
        result = summarize_split(model, dataset, split, x, batch_size=batch_size or cfg.eval_batch_size,
                                 seed=scoring_seed(cfg) if seed is None
                                 else runtime.derive_seed(seed, "eval"), device=dev, estimator=estimator,
                                 samples=samples, progress=progress, options=options)
    if samples_for_metrics:
        result["sample_metrics"] = sample_metrics(model, dataset, split, x, samples_for_metrics, seed or 0,
                                                  progress)
    return {**result, "weights": info.get("weights", info.get("source")), "run_dir": str(run_dir)}


def evaluate_model(model, dataset, split: str = "test", *, estimator: str | None = None,
                   samples: int | None = None, batch_size: int = 256, seed: int | None = None,
                   device: str = "auto", progress: bool = True, source: str = "",
                   options: dict | None = None, samples_for_metrics: int | None = None) -> dict[str, Any]:
    """The bound of a model made outside a run directory (adapters: a diffusers folder) on the data
    set's test or train split, in the same result as evaluate_run (with samples_for_metrics = N, its
    sample metrics too); `source` names its weights."""
    if split not in ("test", "train"):
        raise UserError(f"A model trained elsewhere has no validation split here; use split test or "
                        f"train, not {split!r}.")
    for name, value in (("batch size", batch_size), ("number of samples", samples)):
        if value is not None and value < 1:
            raise UserError(f"The {name} must be at least 1, got {value}.")
    if samples_for_metrics is not None and samples_for_metrics < 2:
        raise UserError(f"--samples-for-metrics needs at least 2 samples, got {samples_for_metrics}.")
    dev = runtime.pick_device(device)
    model = model.to(dev)
    result = summarize_split(model, dataset, split, None, batch_size=batch_size,
                             seed=runtime.derive_seed(seed or 0, "eval"), device=dev, estimator=estimator,
                             samples=samples, progress=progress, options=options)
    if samples_for_metrics:
        result["sample_metrics"] = sample_metrics(model, dataset, split, None, samples_for_metrics, seed or 0,
                                                  progress)
    return {**result, "weights": source}


def sample_metrics(model, dataset, split: str, x, n: int, seed: int = 0, progress: bool = False) -> dict:
    """eval.sample_quality of n samples (drawn from a seed derived from `seed`) against the split."""
    from ..eval.samples import sample_quality
    from .rundir import draw

    drawn = draw(model, n, runtime.derive_seed(seed, "sample-metrics"))
    return sample_quality(drawn, dataset, split, x=x, seed=seed, progress=progress)


def check_precision(precision: str, device: torch.device) -> None:
    """One sentence where `precision` cannot run on `device`: fp16 needs CUDA (sample.batches.autocast
    says so); bf16 on a CPU needs its bfloat16 instructions (emulated, it is slower than fp32)."""
    from ..sample.batches import autocast

    autocast(precision, device)  # unknown names and fp16 off CUDA are refused where they are built
    if precision == "bf16" and device.type == "cpu" and runtime.cpu_bf16() is None:
        raise UserError("Precision bf16 on the CPU needs bfloat16 instructions (AVX512-BF16, AMX or ARM "
                        "BF16), which this CPU lacks; use fp32.")


def sample_run(run_dir: str | Path, n: int = 64, *, seed: int = 0, out: str | Path | None = None,
               checkpoint: str = "best", device: str = "auto", precision: str = "fp32",
               batch_size: int = 64, progress: bool = True) -> Path:
    """Draw n samples (fixed seed) and write a PNG grid (images) or scatter (2-D points); in batches
    of batch_size, under autocast at `precision` (fp32, bf16, fp16: check_precision)."""
    if n < 1:
        raise UserError(f"The number of samples must be at least 1, got {n}.")
    if batch_size < 1:
        raise UserError(f"The batch size must be at least 1, got {batch_size}.")
    dev = runtime.pick_device(device)
    check_precision(precision, dev)
    run_dir = Path(run_dir)
    read_config(run_dir)
    out = Path(out) if out is not None else run_dir / "samples" / f"sample-seed{seed}-n{n}.png"
    if out.is_dir():
        raise UserError(f"The output {out} is a folder; name a file, e.g. {out / 'samples.png'}.")
    inside = run_dir.resolve() in out.resolve().parents
    with RunLock(run_dir, "sample") if inside else nullcontext():
        model, info = load_with_info(run_dir, checkpoint, dev)
        if info.get("warning"):
            stderr_log(info["warning"])
        from .rundir import draw

        x = draw(model, n, seed, precision=precision, progress=progress, batch_size=batch_size)
        path = save_picture(out, x, getattr(model, "levels", None), title=f"{n} samples, seed {seed}")
        if path is None:
            path = out.with_suffix(".pt")
            buffer = io.BytesIO()
            torch.save(x, buffer)
            atomic_write_bytes(path, buffer.getvalue())
    return path


def text_table(result: dict[str, Any]) -> str:
    """The printed result: the bound on each split with its stderr, interval, estimator and terms."""
    from ..eval.samples import sample_table

    splits = result.get("splits") or {result.get("split", "test"): result}
    if result.get("likelihood") == NO_LIKELIHOOD:
        lines = [f"{result.get('split', 'test')}: no likelihood (an implicit model: samples only, so no "
                 "bits/dim and no bound estimator)"]
    else:
        lines = report_io.bound_table(splits)
    if result.get("sample_metrics"):
        lines += sample_table(result["sample_metrics"])
    head = []
    if result.get("run_dir"):
        head.append(f"run: {result['run_dir']}")
    for key in ("steps", "stopped", "selected", "weights"):
        if result.get(key) not in (None, ""):
            head.append(f"{key}: {result[key]}")
    return "\n".join(head + lines)
