"""One run from start to end: resolve the config, make (or reopen) the run directory, fit or train,
then score train / validation / test, export the best weights and write report.md.

Gradient families go through `loop.Trainer`; classical families (fit_mode "fit") are fitted by
their own `fit(train, valid)` and are then exported, scored and reported the same way.  Under
torchrun every process trains and rank 0 alone writes files and scores the result.
"""

from __future__ import annotations

import dataclasses
import re
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from .. import data as datasets
from .._config import to_dict
from ..errors import UserError
from ..io import checkpoint, export
from ..io import metrics as metrics_io
from ..models import registry
from . import implicit, runtime
from .config import SCHEMA, TrainConfig, resolve
from .load import averaged_weights
from .loop import Trainer, check_runtime
from .report import write_report
from .rundir import BEST, EXPORT, RunDir, read_config, stderr_log


class Stopped(Exception):
    """A signal stopped the run after saving a checkpoint; .code is the exit status (128 + signal)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def split_train_valid(x: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, valid): a fraction of x held out for validation, chosen by a permutation from `seed`."""
    n_valid = int(round(fraction * len(x)))
    g = runtime.generator(runtime.derive_seed(seed, "split"), torch.device("cpu"))
    perm = torch.randperm(len(x), generator=g)
    return x[perm[n_valid:]], x[perm[:n_valid]]


def load_dataset(cfg: TrainConfig) -> datasets.Dataset:
    """The run's data set: cfg.data loaded with cfg.data_options (the same for train, eval, sample)."""
    return datasets.load(cfg.data, **cfg.data_options)


def train_for_epoch(dataset, cfg: TrainConfig):
    """epoch -> this run's train part of the data set's draw for that epoch, or None when the train
    split is fixed.  Data redrawn per epoch (dynamically binarized MNIST) are redrawn from
    (the data set's seed, epoch) and split by the same permutation as epoch 0, so a resumed run
    sees the same data as an uninterrupted one; validation stays the epoch-0 draw."""
    if getattr(dataset, "resample", None) is None:
        return None
    return lambda epoch: split_train_valid(dataset.train_for_epoch(epoch), cfg.valid_fraction, cfg.seed)[0]


def configure(family: str | None, layers: list[dict[str, Any]], sets: list[str], run_dir: str | None,
              resume: bool) -> tuple[TrainConfig, Path]:
    """The resolved config and run directory.  A resumed run starts from its stored config."""
    if resume:
        if run_dir is None:
            raise UserError("--resume needs --run-dir, the directory of the run to continue.")
        stored = read_config(Path(run_dir))
        stored.pop("layout", None)
        if family and family != stored["family"]:
            raise UserError(f"The run in {run_dir} trains {stored['family']!r}, not {family!r}.")
        cfg = resolve(stored, *layers, sets=sets)
        _check_unchanged(stored, cfg.to_dict(), run_dir)
        return cfg, Path(run_dir)
    if not family:
        raise UserError("Name the model family to train, e.g. lowerbound train independent --data digits.")
    defaults = registry.get(family).train_defaults  # unknown family: one sentence before anything else
    cfg = resolve({"family": family, **defaults}, *layers, sets=sets)
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = f"runs/{family}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', cfg.data)}-{stamp}"
    return cfg, Path(run_dir)


# what the weights and the split are made of: a resumed run cannot change it
FIXED_ON_RESUME = ("family", "data", "data_options", "model", "seed", "valid_fraction")


def _leaves(d: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}.{k}"))
    return out


def _check_unchanged(stored: dict[str, Any], new: dict[str, Any], run_dir) -> None:
    """Refuse, naming the option, a resume that changes the model or the data its checkpoint was
    trained with (the weights would not fit, or the split would differ)."""
    for key in FIXED_ON_RESUME:
        if key not in stored:
            continue
        old, now = _leaves(stored[key], key), _leaves(new.get(key), key)
        for name in sorted(set(old) | set(now)):
            if old.get(name) != now.get(name):
                raise UserError(f"The run in {run_dir} was trained with {name}={old.get(name)!r}, so "
                                f"--resume cannot change it to {now.get(name)!r}; start a new --run-dir "
                                f"for other model or data options.")


def _agree(rt: runtime.Runtime, fn) -> Any:
    """Run fn on rank 0 and give its value (or its UserError) to every process."""
    try:
        outcome = ("ok", fn() if rt.is_main else None)
    except UserError as e:
        outcome = ("error", str(e))
    outcome = runtime.broadcast(outcome, rt)
    if outcome[0] == "error":
        raise UserError(outcome[1])
    return outcome[1]


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or fit) cfg.family on cfg.data in run_dir; returns the final result (rank 0).  Rank 0
    holds the run directory's lock from before its first write until the report is written.  The
    process-wide flush-denormals setting it turns on is restored when it returns or raises."""
    flushed = runtime.denormals_flushed()
    try:
        return _train(cfg, run_dir, resume, progress)
    finally:
        torch.set_flush_denormal(flushed)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool) -> dict[str, Any]:
    rt = runtime.setup(cfg.device)
    with ExitStack() as hold:
        try:
            run_dir = Path(_agree(rt, lambda: str(run_dir)))
            if not resume:
                _agree(rt, lambda: RunDir.check_new(run_dir))
            dataset = load_dataset(cfg)
            torch.manual_seed(runtime.derive_seed(cfg.seed, "init"))
            model = registry.build(cfg.family, cfg.model, dataset.levels, dataset.shape)
            resolved = {**cfg.to_dict(), "model": _model_options(model, cfg),
                        "layout": {"levels": dataset.levels, "shape": list(dataset.shape)}}
            if model.fit_mode != "fit":
                check_runtime(cfg, rt)
            opened: list[RunDir] = []  # rank 0's; a refusal there reaches every rank through _agree
            _agree(rt, lambda: opened.append(_open(RunDir(run_dir, cfg.keep, cfg.num_samples), hold, resume,
                                                   resolved)))
            files = opened[0] if opened else None
            precision = runtime.resolve_precision(cfg.precision, rt.device)
            if rt.is_main and precision != "fp32":
                cpu = rt.device.type == "cpu"
                where = f"the CPU ({runtime.cpu_bf16()} instructions)" if cpu else str(rt.device)
                stderr_log(f"training under {precision} autocast on {where}"
                           + (" (precision auto)." if cfg.precision == "auto" else "."))
            if rt.is_main and runtime.flush_denormals(rt.device):
                stderr_log("denormal floats are flushed to zero on the CPU (torch.set_flush_denormal), "
                           "which keeps small models from slowing down as weights shrink.")
            train_x, valid_x = split_train_valid(dataset.train, cfg.valid_fraction, cfg.seed)
            if model.fit_mode == "fit":
                fitted = _fit(model, train_x, valid_x, rt, progress)
                info = {"steps": 0, "stopped": "fitted", "fit": fitted, "selected": "fitted"}
            else:
                info = _train_gradient(cfg, rt, model, train_x, valid_x, files, run_dir, resume, progress,
                                       train_for_epoch(dataset, cfg), dataset)
        finally:
            runtime.teardown(rt)
        if not rt.is_main:
            return {}
        return finish(cfg, rt, model, dataset, train_x, valid_x, files, info, progress)


def _open(files: RunDir, hold: ExitStack, resume: bool, resolved: dict[str, Any]) -> RunDir:
    """Rank 0: lock (and for a new run make) the run directory; `hold` releases the lock at the end."""
    hold.enter_context(files.open(resume=resume))
    if not resume:
        files.create(resolved)
    return files


def _model_options(model, cfg: TrainConfig) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return to_dict(config) if dataclasses.is_dataclass(config) else dict(cfg.model)


def _fit(model, train_x, valid_x, rt, progress) -> dict:
    model.to(rt.device)
    out = model.fit(train_x.to(rt.device), valid_x.to(rt.device) if len(valid_x) else None,
                    progress=progress and rt.is_main)
    return {k: v for k, v in (out or {}).items() if isinstance(v, (int, float, str, bool))}


def _train_gradient(cfg, rt, model, train_x, valid_x, files, run_dir, resume, progress,
                    resample=None, dataset=None) -> dict[str, Any]:
    validation = {}
    if not model.has_likelihood and len(valid_x):  # selected by a validation sample metric
        validation = {"validate": implicit.validator(model, dataset, valid_x, cfg.seed),
                      "valid_name": implicit.VALID_NAME}
    trainer = Trainer(cfg, rt, model, train_x, valid_x if len(valid_x) else None, files, progress=progress,
                      resample=resample, **validation)
    if resume:  # every process reads the same state (the run directory must be shared)
        found = checkpoint.load_newest(run_dir / "checkpoints", map_location=rt.device)
        if found is not None:  # else: stopped before its first checkpoint
            state, _, note = found
            if note and rt.is_main:
                stderr_log(note)
            _load_state(trainer, state, run_dir)
        if files is not None:
            files.metrics.truncate_after(trainer.state.step)
            stderr_log(f"resuming at step {trainer.state.step} of {cfg.steps}.")
    reason = trainer.run()
    trainer.eager()
    st = trainer.state
    if reason in ("SIGINT", "SIGTERM", "signal"):
        code = 130 if reason == "SIGINT" else 143
        where = run_dir  # every rank knows it (only rank 0 has `files`)
        raise Stopped(f"stopped by {reason} at step {st.step}; the training state is saved. Resume "
                      f"with: lowerbound train --resume --run-dir {where}", code)
    return {"steps": st.step, "stopped": reason, "best_step": st.best_step,
            "best_valid": st.best_value if st.best_step >= 0 else None,
            "examples_per_s": st.examples / st.elapsed if st.elapsed else None,
            "train_seconds": st.elapsed, "last_valid_terms": trainer.last_valid_terms,
            "precision": trainer.precision}


def _load_state(trainer: Trainer, state: dict[str, Any], run_dir: Path) -> None:
    try:
        trainer.state.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as e:  # written by another version or another model
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"The training state in {run_dir} does not fit this model and its options "
                        f"({reason}).") from None


def finish(cfg, rt, model, dataset, train_x, valid_x, files: RunDir, info, progress) -> dict[str, Any]:
    """Select the weights (best validation unless none), export, score every split, write the report."""
    model.to(rt.device)
    best = files.ckpt_dir / BEST
    if model.fit_mode != "fit":
        if best.is_file():
            chosen, state = best, checkpoint.load(best, map_location=rt.device)
        else:
            state, chosen, _ = checkpoint.load_newest(files.ckpt_dir, map_location=rt.device)
        model.load_state_dict(averaged_weights(state))
        info["selected"] = f"{'best validation' if chosen == best else 'last'}, step {state['step']}"
    model.eval()
    meta = {"family": cfg.family, "data": cfg.data, "data_options": cfg.data_options,
            "levels": dataset.levels, "shape": list(dataset.shape), "model": _model_options(model, cfg),
            "weights": ("ema " if cfg.ema_decay > 0 and model.fit_mode != "fit" else "") + info["selected"],
            "config": cfg.to_dict()}
    export.save(files.path / EXPORT, model.state_dict(), meta)
    if model.has_likelihood:
        results = score_splits(cfg, rt, model, dataset, train_x, valid_x, progress)
        test = results["test"]
    else:  # a GAN: sample metrics where the bound would be
        test = implicit.score_test(model, dataset, cfg.seed, progress)
        results, info["notes"] = {}, implicit.report_notes(test)
    write_report(cfg, files, model, dataset, results, info)
    return {**test, "splits": results, "run_dir": str(files.path), **{k: v for k, v in info.items()
            if k in ("steps", "stopped", "selected", "examples_per_s", "train_seconds", "fit", "precision")},
            "diagnostics": info.get("diagnostics", {})}


def scoring_seed(cfg: TrainConfig) -> int:
    """The seed of the Monte Carlo draws of a run's final scores: report.md, `lowerbound eval` by
    default and compare all use it, so they print the same number for the same weights."""
    return runtime.derive_seed(cfg.seed, "final")


def score_splits(cfg, rt, model, dataset, train_x, valid_x, progress) -> dict[str, dict[str, Any]]:
    """Bound on train (a subset as large as the test set), validation and test; the test split is
    scored as the data set's own, the others as parts of train (the truth, if known, gives each its
    KL to the truth).  Test gets the model's default estimator; train and validation get the cheap
    one it is validated with during training (the same as the default for most families; for
    diffusion an unbiased Monte Carlo estimate over timesteps), each row naming its estimator."""
    from .scoring import summarize_split

    n = min(len(train_x), len(dataset.test))
    splits = {"train": train_x[:n], "valid": valid_x, "test": None}
    seed = scoring_seed(cfg)
    cheap = getattr(model, "validation_estimator", (None, None))
    out = {}
    for name, x in splits.items():
        if x is None or len(x):
            estimator, samples = (None, None) if name == "test" else cheap
            out[name] = summarize_split(model, dataset, name, x, batch_size=cfg.eval_batch_size,
                                        seed=seed, device=rt.device, progress=progress,
                                        estimator=estimator, samples=samples)
    return out


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    path = Path(run_dir) / "metrics.csv"
    return metrics_io.read(path) if path.is_file() else []


def stored_config(run_dir: Path) -> TrainConfig:
    stored = read_config(run_dir)
    stored.pop("layout", None)
    return resolve(stored)


__all__ = ["SCHEMA", "Stopped", "configure", "finish", "load_dataset", "scoring_seed", "split_train_valid",
           "stored_config", "train", "train_for_epoch"]
