"""`Bound`: an upper bound on -log P(x), per example, split into named terms (design.md contract).

Every likelihood-based model's `bound(x)` returns one; `loss(x)` returns one too (its estimator
says what it is when it is not the bound itself, e.g. "l_simple").  Terms are [B] tensors in nats
and stay per example until the very end, so every report can break the bound down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .units import LN2


@dataclass
class Bound:
    """terms: name -> [B] nats.  variance: optional [B] variance of .nats due to the estimator's own
    randomness (e.g. Monte Carlo over timesteps); None when the estimator is deterministic given x
    or its randomness is not tracked.  dims: the data dimension D, for bits per dimension."""

    terms: dict[str, Tensor]
    estimator: str
    exact: bool = False
    dims: int | None = None
    variance: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)  # [B] diagnostics, not part of the sum

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("a Bound needs at least one term")
        shapes = {tuple(t.shape) for t in self.terms.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"every term must have the same shape [B], got {shapes}")

    @property
    def nats(self) -> Tensor:
        """[B] total in nats: the sum of the terms."""
        return torch.stack(list(self.terms.values()), 0).sum(0)

    def _dims(self, dims: int | None) -> int:
        d = dims if dims is not None else self.dims
        if d is None:
            raise ValueError("this Bound does not know its data dimension; pass dims=")
        return d

    def bits_per_dim(self, dims: int | None = None) -> Tensor:
        """[B] total in bits per dimension: nats / (D log 2)."""
        return self.nats / (self._dims(dims) * LN2)

    def term_bits_per_dim(self, dims: int | None = None) -> dict[str, Tensor]:
        """Each term in bits per dimension, [B] each."""
        d = self._dims(dims)
        return {k: v / (d * LN2) for k, v in self.terms.items()}

    def mean(self) -> Tensor:
        """Scalar: mean over the batch of the total in nats (the usual training loss)."""
        return self.nats.mean()

    def detach(self) -> Bound:
        return Bound(
            {k: v.detach() for k, v in self.terms.items()},
            self.estimator,
            self.exact,
            self.dims,
            None if self.variance is None else self.variance.detach(),
            {k: v.detach() for k, v in self.extras.items()},
        )

    @staticmethod
    def cat(bounds: list[Bound]) -> Bound:
        """Concatenate per-example bounds of several batches (same terms, same estimator)."""
        first = bounds[0]
        terms = {k: torch.cat([b.terms[k] for b in bounds]) for k in first.terms}
        variance = None
        if all(b.variance is not None for b in bounds):
            variance = torch.cat([b.variance for b in bounds])
        extras = {k: torch.cat([b.extras[k] for b in bounds]) for k in first.extras}
        return Bound(terms, first.estimator, first.exact, first.dims, variance, extras)
