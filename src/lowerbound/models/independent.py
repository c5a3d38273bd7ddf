"""Family `independent`: every dimension on its own, learned by gradient descent.

The simplest neural model that keeps the contract of design.md: for discrete data (K levels) a
categorical distribution per dimension, P(x) = prod_d softmax(logits_d)[x_d]; for continuous data
a diagonal Gaussian, p(x) = prod_d N(x_d; mu_d, sigma_d^2).  The bound is the exact negative
log-likelihood.  Its maximum-likelihood optimum is known in closed form (the empirical marginal
frequencies; the per-dimension mean and standard deviation), which makes it the oracle the
training runtime is tested against.  It is the "independent categorical per pixel" rung of the
digits reference ladder (benchmarks.md: 2.424 bits/dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..prob.bound import Bound
from .base import GenerativeModel
from .registry import register


@dataclass
class IndependentConfig:
    """init_scale: standard deviation of the initial logits (0 = start from the uniform / N(0, 1))."""

    init_scale: float = 0.0

    def __post_init__(self) -> None:
        if not (self.init_scale >= 0.0 and math.isfinite(self.init_scale)):
            raise ValueError(f"init_scale must be a finite number >= 0, got {self.init_scale}")


class Independent(GenerativeModel):
    """Per-dimension categorical logits [D, K] (discrete) or mean and log-scale [D] (continuous)."""

    family = "independent"
    fit_mode = "gradient"
    estimators = ("exact",)

    def __init__(self, config: IndependentConfig, levels: int | None, shape: tuple[int, ...]):
        super().__init__(levels=levels, shape=shape, config=config)
        d = self.dims
        if levels is not None:
            self.logits = nn.Parameter(torch.randn(d, levels) * config.init_scale)
        else:
            self.mean = nn.Parameter(torch.randn(d) * config.init_scale)
            self.log_scale = nn.Parameter(torch.zeros(d))

    def _check(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected x of shape [B, {', '.join(map(str, self.shape))}], "
                             f"got {list(x.shape)}")
        return x.reshape(x.shape[0], -1)

    def log_prob(self, x: Tensor) -> Tensor:
        """[B, *shape] -> [B] nats: the exact log-likelihood of each example."""
        flat = self._check(x)
        if self.levels is not None:
            logp = torch.log_softmax(self.logits, dim=-1)  # [D, K]
            picked = logp.gather(1, flat.long().t())  # [D, B]
            return picked.sum(0)
        z = (flat - self.mean) * torch.exp(-self.log_scale)
        return (-0.5 * z**2 - self.log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)

    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None):
        """-log P(x) per example in nats, exact: one term "nll" of shape [B]."""
        if estimator not in (None, "exact"):
            raise ValueError(f"the independent model has only the exact estimator, got {estimator!r}")
        return Bound({"nll": -self.log_prob(x)}, "exact", exact=True, dims=self.dims)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, *shape]: long levels for discrete data, floats for continuous data."""
        if self.levels is not None:
            probs = torch.softmax(self.logits.float(), dim=-1)  # [D, K]
            draws = torch.multinomial(probs, n, replacement=True, generator=generator)  # [D, n]
            return draws.t().reshape(n, *self.shape)
        eps = torch.randn(n, self.dims, generator=generator, device=self.mean.device)
        return (self.mean + eps * torch.exp(self.log_scale)).reshape(n, *self.shape)


@register("independent", IndependentConfig,
          "one categorical per dimension (or a diagonal Gaussian), trained by gradient descent")
def build(config: IndependentConfig, levels: int | None, shape: tuple[int, ...]) -> Independent:
    return Independent(config, levels, shape)
