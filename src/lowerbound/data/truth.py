"""Known densities behind synthetic data sets: exact log p(x), seeded sampling, and the entropy.

A data set that knows its own density lets evaluation report KL(p_data || p_model) =
E_p[log p(x) - log q(x)] >= 0 (design.md), so each truth offers:

    log_prob(x)   [B, d] -> [B] nats, float64, exact (or exact up to a stated quadrature)
    sample(n, g)  [n, d] float64 points drawn with a torch.Generator (reproducible from a seed)
    entropy()     H(p) = -E_p[log p(x)] in nats, as an Estimate: the closed form where one exists,
                  otherwise the Monte Carlo mean of -log p(x_i) over x_i ~ p with its standard error,
                  drawn from a fixed seed and cached (Robert & Casella, Monte Carlo Statistical Methods).

Everything is computed in float64: a KL near 0.001 nats must not drown in rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from ..errors import UserError
from ..prob.estimate import Estimate


class Truth:
    """Base class: subclasses set `name`, `dim` and implement `_log_prob` and `sample`."""

    name: str = "truth"
    dim: int = 2
    mc_samples: int = 2**20  # draws for the Monte Carlo entropy (stderr ~ 0.001 nats in 2-D)
    chunk: int = 2**16  # points per log_prob evaluation, to bound memory

    def _log_prob(self, x: Tensor) -> Tensor:  # [B, d] float64 -> [B] nats
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, d] float64 draws from the density."""
        raise NotImplementedError

    def exact_entropy(self) -> float | None:
        """The closed-form entropy in nats, or None when there is none."""
        return None

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats: x [B, d] (any float dtype) -> [B] float64."""
        x = torch.as_tensor(x)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise UserError(f"The {self.name} density takes points of shape [B, {self.dim}], "
                            f"got {tuple(x.shape)}.")
        x = x.detach().to(torch.float64)
        if len(x) <= self.chunk:
            return self._log_prob(x)
        return torch.cat([self._log_prob(c) for c in x.split(self.chunk)])

    def entropy(self) -> Estimate:
        """H(p) in nats: exact when a closed form exists, else Monte Carlo (seed 0) with its stderr."""
        cached = getattr(self, "_entropy", None)
        if cached is None:
            exact = self.exact_entropy()
            if exact is not None:
                cached = Estimate.exact_value(torch.tensor(exact, dtype=torch.float64))
            else:
                cached = self.entropy_mc(self.mc_samples, torch.Generator().manual_seed(0))
            self._entropy = cached
        return cached

    def entropy_mc(self, n: int, generator: torch.Generator | None = None) -> Estimate:
        """-mean log p(x_i), x_i ~ p, over n draws: an unbiased estimate of H(p) with its stderr."""
        pieces = []
        for start in range(0, n, self.chunk):
            x = self.sample(min(self.chunk, n - start), generator)
            pieces.append(-self._log_prob(x))
        return Estimate.from_samples(torch.cat(pieces))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim})"


class GaussianMixtureTruth(Truth):
    """p(x) = sum_k w_k N(x; mu_k, L_k L_k^T): weights [K], means [K, d], scale_tril [K, d, d]."""

    def __init__(self, name: str, weights: Tensor, means: Tensor, scale_tril: Tensor) -> None:
        weights, means, scale_tril = (torch.as_tensor(t, dtype=torch.float64)
                                      for t in (weights, means, scale_tril))
        k, d = means.shape
        if weights.shape != (k,) or scale_tril.shape != (k, d, d):
            raise ValueError(f"mixture shapes disagree: weights {tuple(weights.shape)}, means "
                             f"{tuple(means.shape)}, scale_tril {tuple(scale_tril.shape)}")
        if (weights <= 0).any() or abs(weights.sum().item() - 1.0) > 1e-9:
            raise ValueError("mixture weights must be positive and sum to 1")
        if (torch.diagonal(scale_tril, dim1=-2, dim2=-1) <= 0).any():
            raise ValueError("scale_tril must have a positive diagonal")
        self.name, self.dim = name, d
        self.weights, self.means, self.scale_tril = weights, means, torch.tril(scale_tril)
        self.distribution = MixtureSameFamily(
            Categorical(probs=weights), MultivariateNormal(means, scale_tril=self.scale_tril))

    def _log_prob(self, x: Tensor) -> Tensor:
        # the same number as self.distribution.log_prob(x), several times faster: one triangular
        # solve per component instead of MultivariateNormal's batched broadcasting
        diff = (x[None] - self.means[:, None]).transpose(1, 2)  # [K, d, B]
        z = torch.linalg.solve_triangular(self.scale_tril, diff, upper=False)
        log_det = torch.log(torch.diagonal(self.scale_tril, dim1=-2, dim2=-1)).sum(-1)  # [K]
        log_k = (-0.5 * (z**2).sum(1) - (log_det + 0.5 * self.dim * math.log(2 * math.pi))[:, None]
                 + torch.log(self.weights)[:, None])  # [K, B]
        return torch.logsumexp(log_k, dim=0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[which] + torch.einsum("nij,nj->ni", self.scale_tril[which], z)


def isotropic_mixture(name: str, means: Tensor, std: float, weights: Tensor | None = None
                      ) -> GaussianMixtureTruth:
    """Equal-width isotropic Gaussians N(mu_k, std^2 I); equal weights unless given."""
    means = torch.as_tensor(means, dtype=torch.float64)
    k, d = means.shape
    if not std > 0 or not math.isfinite(std):
        raise ValueError(f"std must be positive, got {std}")
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights
    scale = std * torch.eye(d, dtype=torch.float64).expand(k, d, d)
    return GaussianMixtureTruth(name, weights, means, scale)
