"""An estimate with its standard error: the value every function in `lowerbound.prob` returns.

Exact results (closed forms) have stderr 0 and num_samples 0; Monte Carlo results carry the
standard error of the sample mean, so a 95% interval is value +- 1.96 stderr (normal approximation).
Where the draws' tail is too heavy for that (prob.tails), the stderr is inf and tail_k says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Estimate:
    """value and stderr have the batch shape of the quantity estimated; tail_k, where computed, is the
    Pareto k-hat of the draws' heavier tail (prob.tails.tail_shape), same shape."""

    value: Tensor
    stderr: Tensor
    num_samples: int = 0
    exact: bool = False
    tail_k: Tensor | None = None

    @staticmethod
    def exact_value(value: Tensor) -> Estimate:
        value = torch.as_tensor(value)
        return Estimate(value, torch.zeros_like(value), 0, True)

    @staticmethod
    def from_samples(samples: Tensor, dim: int = 0) -> Estimate:
        """Mean of i.i.d. samples along `dim` with the standard error std / sqrt(n)."""
        n = samples.shape[dim]
        mean = samples.mean(dim)
        if n < 2:
            return Estimate(mean, torch.full_like(mean, math.inf), n, False)
        return Estimate(mean, samples.std(dim, unbiased=True) / math.sqrt(n), n, False)

    def confidence_interval(self, level: float = 0.95) -> tuple[Tensor, Tensor]:
        """Two-sided normal-approximation interval; (value, value) when exact."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        z = math.sqrt(2.0) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()
        return self.value - z * self.stderr, self.value + z * self.stderr

    def __add__(self, other: Estimate) -> Estimate:
        """Sum of two independent estimates (stderrs add in quadrature)."""
        return _combine(self, other, 1.0)

    def __sub__(self, other: Estimate) -> Estimate:
        """Difference of two independent estimates (stderrs add in quadrature)."""
        return _combine(self, other, -1.0)

    def __neg__(self) -> Estimate:
        return Estimate(-self.value, self.stderr, self.num_samples, self.exact)

    def item(self) -> float:
        return float(self.value.item())

    def __repr__(self) -> str:
        if self.value.numel() == 1:
            if self.exact:
                return f"Estimate({self.value.item():.6g}, exact)"
            return f"Estimate({self.value.item():.6g} +- {self.stderr.item():.2g}, n={self.num_samples})"
        return f"Estimate(shape={tuple(self.value.shape)}, exact={self.exact}, n={self.num_samples})"


def _combine(a: Estimate, b: Estimate, sign: float) -> Estimate:
    value = a.value + sign * b.value
    stderr = torch.sqrt(a.stderr**2 + b.stderr**2)
    return Estimate(value, stderr, max(a.num_samples, b.num_samples), a.exact and b.exact)
