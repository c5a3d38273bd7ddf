"""What the `eval` and `sample` commands do with a finished (or running) run directory, and the
text table the `train` and `eval` commands print.

Both use the best-validation export unless `checkpoint="last"` is asked, and score exactly the
splits training saw: the validation split is rebuilt from the run's seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..io import report as report_io
from . import runtime
from .load import load_with_info
from .run import load_dataset, split_train_valid, stored_config
from .rundir import read_config, save_picture
from .scoring import summarize_split

SPLITS = ("test", "valid", "train")


def evaluate_run(run_dir: str | Path, split: str = "test", *, estimator: str | None = None,
                 samples: int | None = None, checkpoint: str = "best", batch_size: int | None = None,
                 seed: int = 0, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """The bound of a run's model on one split: value, stderr, interval, terms, estimator."""
    if split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; choose one of: {', '.join(SPLITS)}.")
    run_dir = Path(run_dir)
    cfg = stored_config(run_dir)
    dev = runtime.pick_device(device)
    model, info = load_with_info(run_dir, checkpoint, dev)
    if estimator is not None and estimator not in getattr(model, "estimators", (estimator,)):
        raise UserError(f"The {cfg.family} model has no estimator {estimator!r}; choose one of: "
                        f"{', '.join(model.estimators)}.")
    dataset = load_dataset(cfg)
    train_x, valid_x = split_train_valid(dataset.train, cfg.valid_fraction, cfg.seed)
    x = {"test": None, "valid": valid_x, "train": train_x}[split]
    if x is not None and len(x) == 0:
        raise UserError(f"The run in {run_dir} has no {split} split (valid_fraction is 0).")
    result = summarize_split(model, dataset, split, x, batch_size=batch_size or cfg.eval_batch_size,
                             seed=runtime.derive_seed(seed, "eval"), device=dev, estimator=estimator,
                             samples=samples, progress=progress)
    return {**result, "weights": info.get("weights", info.get("source")), "run_dir": str(run_dir)}


def sample_run(run_dir: str | Path, n: int = 64, *, seed: int = 0, out: str | Path | None = None,
               checkpoint: str = "best", device: str = "auto") -> Path:
    """Draw n samples (fixed seed) and write a PNG grid (images) or scatter (2-D points)."""
    if n < 1:
        raise UserError(f"The number of samples must be at least 1, got {n}.")
    run_dir = Path(run_dir)
    read_config(run_dir)
    model, _ = load_with_info(run_dir, checkpoint, runtime.pick_device(device))
    from .rundir import draw

    x = draw(model, n, seed)
    out = Path(out) if out is not None else run_dir / "samples" / f"sample-seed{seed}-n{n}.png"
    path = save_picture(out, x, getattr(model, "levels", None), title=f"{n} samples, seed {seed}")
    if path is None:
        tensor_path = out.with_suffix(".pt")
        torch.save(x, tensor_path)
        return tensor_path
    return path


def text_table(result: dict[str, Any]) -> str:
    """The printed result: the bound on each split with its stderr, interval, estimator and terms."""
    splits = result.get("splits") or {result.get("split", "test"): result}
    lines = report_io.bound_table(splits)
    head = []
    if result.get("run_dir"):
        head.append(f"run: {result['run_dir']}")
    for key in ("steps", "stopped", "selected", "weights"):
        if result.get(key) not in (None, ""):
            head.append(f"{key}: {result[key]}")
    return "\n".join(head + lines)
