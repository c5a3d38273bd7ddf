"""The contract every model keeps (design.md), as a base class.

    loss(x)   -> Bound   training objective per example (its .estimator says what it is)
    bound(x)  -> Bound   upper bound on -log P(x) in nats per example, split into named terms
    sample(n, generator=None) -> tensor of integer levels (or floats for continuous data)

x is a batch of data in the data set's layout: integer levels 0..K-1 (long) of shape [B, *shape]
for discrete data (levels=K), floats of shape [B, *shape] for continuous data (levels=None).

Models trained by gradient descent set `fit_mode = "gradient"`; classical models fitted in
closed form or by EM set `fit_mode = "fit"` and implement `fit(train, valid)`.  A GAN sets
`has_likelihood = False` and has no bound.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..prob.bound import Bound


class GenerativeModel(nn.Module):
    """Base class: holds the data layout (levels, shape) and the family's config."""

    family: ClassVar[str] = "?"
    fit_mode: ClassVar[str] = "gradient"  # or "fit"
    has_likelihood: ClassVar[bool] = True
    # names accepted by bound(x, estimator=...); the first is the default
    estimators: ClassVar[tuple[str, ...]] = ("default",)
    # (estimator, samples) the training loop scores validation with: a cheap unbiased one where the
    # default is costly (diffusion's full sum over T steps); the final tables use the default.
    validation_estimator: ClassVar[tuple[str | None, int | None]] = (None, None)
    # (estimator, samples) of a tighter, costlier bound reported beside the default in comparisons
    # (a VAE's IWAE-k, more Monte Carlo draws of t for VDM); None where the default is the tightest.
    tight_estimator: ClassVar[tuple[str, int | None] | None] = None
    # True where sample() runs an iterative sampler (T network calls): the loop then draws sample
    # grids only at the end unless asked (TrainConfig.sample_every).
    iterative_sampler: ClassVar[bool] = False

    def __init__(self, *, levels: int | None, shape: tuple[int, ...], config: Any = None):
        super().__init__()
        if levels is not None and levels < 2:
            raise ValueError(f"levels must be >= 2 or None, got {levels}")
        self.levels = levels
        self.shape = tuple(int(s) for s in shape)
        self.config = config

    @property
    def dims(self) -> int:
        """D: the number of dimensions of one example."""
        return math.prod(self.shape)

    def loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> Bound:
        """Training objective per example; defaults to the bound."""
        return self.bound(x, generator=generator)

    def bound(
        self,
        x: Tensor,
        *,
        estimator: str | None = None,
        samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Bound:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def resolve_estimator(self, estimator: str | None, samples: int | None) -> str:
        """The estimator bound() uses (the default, the first of `estimators`, when None); refuses
        an unknown name or fewer than one sample with one sentence."""
        estimator = estimator or self.estimators[0]
        if estimator not in self.estimators:
            raise UserError(f"The {self.family} model has no estimator {estimator!r}; choose one of: "
                            f"{', '.join(self.estimators)}.")
        if samples is not None and samples < 1:
            raise UserError(f"The number of samples must be at least 1, got {samples}.")
        return estimator

    def fit(self, train: Tensor, valid: Tensor | None = None, *, progress: bool = True) -> dict:
        """Closed-form / EM fitting for fit_mode == "fit" models; returns a dict of diagnostics."""
        raise NotImplementedError(f"{self.family} is trained by gradient descent, not fit()")

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: dicts with "params" and optionally "lr_scale" (a
        multiple of the run's learning rate) and "weight_decay".  One group by default."""
        return [{"params": list(self.parameters())}]

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")
