"""Scoring a split with the model's bound: the validation number of the loop and the final table.

`score` runs model.bound over a split in batches without gradients and concatenates the per-example
terms (design.md: reduce late): the loop's fast validation number.  `summarize_split` is the final
result, computed by the eval room's `lowerbound.eval.likelihood` on the run's real Dataset (its true
density kept), so the train and eval commands print the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..data.base import Dataset
from ..eval.likelihood import likelihood
from ..prob.bound import Bound
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


def summarize_split(model: nn.Module, dataset: Dataset, split: str, x: Tensor | None = None, *,
                    batch_size: int, seed: int, device: torch.device, estimator: str | None = None,
                    samples: int | None = None, progress: bool = False, options: dict | None = None
                    ) -> dict[str, Any]:
    """LikelihoodResult.to_dict() of `split` of the real data set (so a known true density gives the
    KL to the truth); x: the examples when they are a part of a split (validation, a train subset).
    The stderr is over examples: the spread of the split."""
    res = likelihood(model, dataset, split, x=x, estimator=estimator, samples=samples,
                     batch_size=batch_size, seed=seed, progress=progress, device=device, options=options)
    return res.to_dict()
