"""The one honest number: a model's bound on a data set's split, with its uncertainty (design.md).

Discrete data: the mean over examples of -log2 P(x) / D, bits per dimension.  Continuous data:
nats per example.  The standard error is that of a mean over n examples, std / sqrt(n).  Where the
estimator is itself random (Monte Carlo over dequantization noise, timesteps or importance draws),
each example's noise is drawn independently, so the spread over examples already holds it and
std / sqrt(n) covers both sources; the share due to the estimator, sqrt(sum_i var_i) / n from
Bound.variance, is reported beside it as estimator_stderr.

For data whose true density is known, the distance to the truth is estimated on the same points,
paired: KL(p_data || p_model) <= mean_i [log p_true(x_i) + bound_i], with the standard error of the
paired differences, several times smaller than that of NLL minus entropy (benchmarks.md, toy2d-kl).

A bound's extras (per-example diagnostics outside the sum, e.g. a VAE's K-draw ELBO and the gap
ELBO - IWAE) are reported the same way: mean and stderr over examples, in the result's unit; counts
(COUNTS: an ODE solver's function evaluations) are reported as they are.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..data.base import Dataset
from ..errors import UserError
from ..models import work
from ..models.base import GenerativeModel
from ..prob.bound import Bound
from ..prob.estimate import Estimate
from ..prob.units import LN2

COUNTS = ("nfe",)  # extras that are counts, not nats


@dataclass
class LikelihoodResult:
    """value, stderr, interval, terms and extras are in `unit` ("bits/dim" or "nats"); terms and
    extras map a name to (mean, stderr over examples); per_example: [N] nats."""

    estimator: str
    exact: bool
    unit: str
    value: float
    stderr: float
    interval: tuple[float, float]
    terms: dict[str, tuple[float, float]]
    n: int
    kl_to_truth: tuple[float, float] | None
    per_example: Tensor = field(repr=False)
    seconds: float = 0.0
    split: str = "test"
    dataset: str = ""
    model: str = ""
    extras: dict[str, tuple[float, float]] = field(default_factory=dict)
    estimator_stderr: float | None = None  # part of stderr due to the estimator's own randomness

    @property
    def key(self) -> str:
        return "bits_per_dim" if self.unit == "bits/dim" else "nats"

    def to_dict(self) -> dict:
        """JSON-able summary (no per-example tensor)."""
        out = {
            self.key: self.value,
            "unit": self.unit,
            "stderr": self.stderr,
            "interval": list(self.interval),
            "terms": {k: {"value": v, "stderr": s} for k, (v, s) in self.terms.items()},
            "extras": {k: {"value": v, "stderr": s} for k, (v, s) in self.extras.items()},
            "estimator": self.estimator,
            "exact": self.exact,
            "n": self.n,
            "estimator_stderr": self.estimator_stderr,
            "kl_to_truth": None,
            "seconds": self.seconds,
            "split": self.split,
            "dataset": self.dataset,
            "model": self.model,
        }
        if self.kl_to_truth is not None:
            out["kl_to_truth"] = {"value": self.kl_to_truth[0], "stderr": self.kl_to_truth[1],
                                  "unit": "nats"}
        return out

    def table(self) -> str:
        """A readable table: the bound, each term, and (if known) the KL to the truth."""
        kind = "exact" if self.exact else "upper bound"
        head = (f"{self.model or 'model'} on {self.dataset or 'data'} ({self.split}, n = {self.n}), "
                f"{self.unit}")
        rows = [("bound (" + kind + ")", self.value, self.stderr, self.estimator)]
        rows += [(f"  {k}", v, s, self.estimator) for k, (v, s) in self.terms.items()]
        rows += [(f"{k} (extra)", v, s, self.estimator) for k, (v, s) in self.extras.items()]
        if self.kl_to_truth is not None:
            rows.append(("KL to truth (nats)", *self.kl_to_truth, "paired: log p_true + bound"))
        width = max(len(r[0]) for r in rows)
        lines = [head, f"{'quantity':<{width}}  {'value':>10}  {'stderr':>8}  estimator"]
        lines += [f"{name:<{width}}  {v:>10.4f}  {s:>8.4f}  {est}" for name, v, s, est in rows]
        lo, hi = self.interval
        lines.append(f"95% interval: [{lo:.4f}, {hi:.4f}] {self.unit}; {self.seconds:.1f} s")
        return "\n".join(lines)


def batch_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator for batch `index`: seeded from (seed, index), so results do not depend on
    what ran before (only on the batch size)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


class ExampleBar:
    """A tqdm bar to stderr over the n examples of a split.  Inside batch(lo, size) the model's bound
    reports the share of its work done (models/work.py: timestep rows, draws, ODE time), moved to
    lo + share * size examples, so a batch of minutes moves the bar (and its ETA) as it goes; an
    estimator that reports nothing moves it at the batch's end."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} examples [{elapsed}<{remaining}]"

    def __init__(self, n: int, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=n, desc=desc, leave=False, bar_format=self.FORMAT, file=sys.stderr)

    def _to(self, position: float) -> None:
        if position > self.bar.n:  # never backwards
            self.bar.update(position - self.bar.n)

    @contextmanager
    def batch(self, lo: int, size: int) -> Iterator[None]:
        with work.metered(lambda fraction: self._to(lo + fraction * size)):
            yield
        self._to(lo + size)

    def close(self) -> None:
        self.bar.close()


def _check(model: GenerativeModel, dataset: Dataset, estimator: str | None, samples: int | None,
           batch_size: int, options: dict | None = None) -> None:
    if not getattr(model, "has_likelihood", True):
        raise UserError(f"The {model.family} model is implicit: no likelihood, only samples.")
    if model.levels != dataset.levels or tuple(model.shape) != tuple(dataset.shape):
        raise UserError(f"The {model.family} model was built for levels {model.levels} and shape "
                        f"{tuple(model.shape)}, but {dataset.name} has levels {dataset.levels} and "
                        f"shape {tuple(dataset.shape)}.")
    if estimator is not None and estimator not in model.estimators:
        raise UserError(f"The {model.family} model has no estimator {estimator!r}; choose one of: "
                        f"{', '.join(model.estimators)}.")
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise UserError(f"samples must be a positive integer, got {samples!r}.")
    if batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size}.")
    if options and "options" not in inspect.signature(model.bound).parameters:
        raise UserError(f"The {model.family} model's estimators take no options.")


def _mean_stderr(values: Tensor) -> tuple[float, float]:
    """Mean of [N] values and its standard error std/sqrt(n).  Where each value carries its own
    independent estimator noise (Monte Carlo over timesteps, IWAE draws), the spread over examples
    already contains that noise, so std/sqrt(n) covers both sources; adding the estimator's
    variance again would count it twice."""
    est = Estimate.from_samples(values.double())  # stderr inf for a single example: unknown
    return est.value.item(), est.stderr.item()


def likelihood(model: GenerativeModel, dataset: Dataset, split: str = "test", *,
               estimator: str | None = None, samples: int | None = None, batch_size: int = 256,
               seed: int = 0, progress: bool = True, device=None, x: Tensor | None = None,
               options: dict | None = None) -> LikelihoodResult:
    """Evaluate model.bound on every example of dataset's split (batched, no grad, eval mode).

    x: [N, *shape] examples to score in place of dataset.split(split), e.g. the validation part of
    the train split; `split` then only names them ("train", "valid", "test", ...) while the data
    set still gives the layout and, where known, the true density.  options: the estimator's own
    options (e.g. the ode estimator's rtol), passed to model.bound."""
    _check(model, dataset, estimator, samples, batch_size, options)
    extra = {"options": options} if options else {}
    if x is not None and tuple(x.shape[1:]) != tuple(dataset.shape):
        raise UserError(f"The {split} examples have shape {tuple(x.shape[1:])}, but {dataset.name} "
                        f"has shape {tuple(dataset.shape)}.")
    data = dataset.split(split) if x is None else x
    if len(data) == 0:
        raise UserError(f"The {split} split of {dataset.name} is empty.")
    device = torch.device(device) if device is not None else model.device
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    bounds: list[Bound] = []
    truth: list[Tensor] = []
    bar = ExampleBar(len(data), f"bound on {dataset.name} {split}") if progress else None
    try:
        with torch.no_grad():
            for i, lo in enumerate(range(0, len(data), batch_size)):
                xb = data[lo:lo + batch_size]
                g = batch_generator(seed, i, device)
                with bar.batch(lo, len(xb)) if bar is not None else nullcontext():
                    b = model.bound(xb.to(device), estimator=estimator, samples=samples, generator=g, **extra)
                bounds.append(_to_cpu(b))
                if dataset.truth is not None:
                    truth.append(dataset.truth.log_prob(xb).detach().double().cpu())
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return _summarize(Bound.cat(bounds), truth, model, dataset, split, time.perf_counter() - start)


def _to_cpu(b: Bound) -> Bound:
    variance = None if b.variance is None else b.variance.detach().double().cpu()
    return Bound({k: v.detach().double().cpu() for k, v in b.terms.items()}, b.estimator, b.exact,
                 b.dims, variance, {k: v.detach().double().cpu() for k, v in b.extras.items()})


def _summarize(b: Bound, truth: list[Tensor], model, dataset, split, seconds) -> LikelihoodResult:
    nats = b.nats
    if not bool(torch.isfinite(nats).all()):
        bad = int((~torch.isfinite(nats)).sum())
        raise UserError(f"The {model.family} model's bound is not finite on {bad} {split} examples "
                        f"of {dataset.name}.")
    scale = 1.0 / (dataset.dims * LN2) if dataset.levels is not None else 1.0
    value, stderr = _mean_stderr(nats * scale)
    # the share of that error due to the estimator's own randomness, reported beside it
    est_stderr = None
    if b.variance is not None:
        est_stderr = math.sqrt(b.variance.double().sum().item()) / len(nats) * scale
    z = Estimate(torch.tensor(value, dtype=torch.float64),
                 torch.tensor(stderr, dtype=torch.float64)).confidence_interval(0.95)
    terms = {k: _mean_stderr(v * scale) for k, v in b.terms.items()}
    extras = {k: _mean_stderr(v if k in COUNTS else v * scale) for k, v in b.extras.items()}
    kl = None
    if truth:
        kl = _mean_stderr(torch.cat(truth) + nats)
    return LikelihoodResult(
        estimator=b.estimator, exact=b.exact, unit="bits/dim" if dataset.levels is not None else "nats",
        value=value, stderr=stderr, interval=(z[0].item(), z[1].item()), terms=terms, n=len(nats),
        kl_to_truth=kl, per_example=nats, seconds=seconds, split=split, dataset=dataset.name,
        model=model.family, extras=extras, estimator_stderr=est_stderr)
