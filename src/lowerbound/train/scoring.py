"""Scoring a split with the model's bound: the validation number of the loop and the final table.

`score` runs model.bound over a split in batches without gradients and concatenates the per-example
terms (design.md: reduce late).  `summarize` turns that into the result the CLI prints.  When the
eval room's `lowerbound.eval.likelihood` is available, `summarize_split` defers to it, so the train
and eval commands print the same table; this module is the fallback and the loop's fast path.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..prob.bound import Bound
from ..prob.estimate import Estimate
from ..prob.units import LN2
from . import runtime


@torch.no_grad()
def score(model: nn.Module, x: Tensor, batch_size: int, seed: int, device: torch.device,
          *, estimator: str | None = None, samples: int | None = None) -> Bound:
    """Concatenated Bound of model.bound over x in batches; randomness seeded by `seed`."""
    was_training = model.training
    model.eval()
    g = runtime.generator(seed, device)
    parts = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        kwargs: dict[str, Any] = {"generator": g}
        if estimator is not None:
            kwargs["estimator"] = estimator
        if samples is not None:
            kwargs["samples"] = samples
        parts.append(model.bound(xb, **kwargs).detach())
    model.train(was_training)
    return Bound.cat(parts)


def summarize(bound: Bound, levels: int | None, dims: int, level: float = 0.95) -> dict[str, Any]:
    """The JSON-ready result: value (bits/dim, or nats when levels is None), stderr, interval, terms."""
    scale = 1.0 / (dims * LN2) if levels is not None else 1.0
    per_example = bound.nats.double() * scale
    est = Estimate.from_samples(per_example)
    stderr = float(est.stderr)
    if bound.variance is not None:  # the estimator's own randomness, averaged over N examples
        n = len(per_example)
        stderr = math.sqrt(stderr**2 + float(bound.variance.double().sum()) * scale**2 / n**2)
        est = Estimate(est.value, torch.tensor(stderr, dtype=torch.float64), n, False)
    lo, hi = est.confidence_interval(level)
    unit = "bits_per_dim" if levels is not None else "nats"
    terms = {k: Estimate.from_samples(v.double() * scale) for k, v in bound.terms.items()}
    return {  # the layout of eval.LikelihoodResult.to_dict()
        unit: float(est.value),
        "unit": "bits/dim" if levels is not None else "nats",
        "stderr": stderr,
        "interval": [float(lo), float(hi)],
        "terms": {k: {"value": float(e.value), "stderr": float(e.stderr)} for k, e in terms.items()},
        "estimator": bound.estimator,
        "exact": bool(bound.exact),
        "n": int(len(per_example)),
    }


def summarize_split(model: nn.Module, x: Tensor, *, levels: int | None, batch_size: int, seed: int,
                    device: torch.device, estimator: str | None = None, samples: int | None = None,
                    progress: bool = False, name: str = "split") -> dict[str, Any]:
    """Result dict for one split (the stderr is over examples: the spread of the test set)."""
    try:
        from ..eval.likelihood import likelihood
    except ImportError:  # the eval room not written yet: score here
        likelihood = None
    if likelihood is not None:
        from ..data.base import Dataset

        split = Dataset(name, train=x[:1], test=x, levels=levels, shape=tuple(x.shape[1:]))
        res = likelihood(model, split, "test", estimator=estimator, samples=samples,
                         batch_size=batch_size, seed=seed, progress=progress, device=device)
        return res.to_dict()
    bound = score(model, x, batch_size, seed, device, estimator=estimator, samples=samples)
    return summarize(bound, levels, model.dims)
