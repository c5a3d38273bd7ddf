"""Gaussian baselines: one full-covariance Gaussian, and scikit-learn's Gaussian mixture.

Continuous data: the bound is -log p(x) itself (exact).  Discrete data (levels 0..K-1) are seen as
y = 2x/(K-1) - 1 and scored by dequantization (design.md; Theis, van den Oord & Bethge 2016,
"A note on the evaluation of generative models", sec. 3.1; Uria, Murray & Larochelle 2013):

    -log P(x) <= -E_u[log p(y + u)] - D log w,     u ~ U(-w/2, w/2)^D,  w = 2/(K-1)

Estimators: "dequantization" (Monte Carlo over u with S draws; its variance is reported),
"importance" (-log mean_s p(y + u_s): a tighter bound in expectation, Jensen over S draws), and
for the single Gaussian "analytic" (the expectation over u in closed form:
E_u log N(y + u) = log N(y) - tr(Sigma^-1) w^2 / 24).  Registered from models/baselines.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..prob.bound import Bound
from ..prob.units import bin_width, from_signed, to_signed
from .baselines import _Baseline
from .registry import register


def _mvn_log_prob(y: Tensor, mean: Tensor, scale_tril: Tensor) -> Tensor:
    """log N(y; mean, L L^T) in nats.  y: [..., D], mean: [..., D], scale_tril: [..., D, D]."""
    diff = (y - mean).unsqueeze(-1)
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)
    half_logdet = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * white.pow(2).sum(-1) - half_logdet - 0.5 * y.shape[-1] * math.log(2 * math.pi)


class _Density(_Baseline):
    """A density p(y) on R^D, turned into a bound on -log P(x) for discrete x by dequantization."""

    needs_levels = False
    estimators = ("dequantization", "importance")
    default_samples = 16

    def __init__(self, config, levels, shape):
        super().__init__(config, levels, shape)
        if levels is None:  # continuous data: the density is the likelihood
            self.estimators = ("exact",)

    def log_density(self, y: Tensor) -> Tensor:
        """[N, D] -> [N] log p(y) in nats."""
        raise NotImplementedError

    def sample_density(self, n: int, generator: torch.Generator | None) -> Tensor:
        """[n, D] floats drawn from p."""
        raise NotImplementedError

    def _scaled(self, x: Tensor) -> Tensor:
        """The model's view of the data in float64: y on [-1, 1] for discrete data, x otherwise."""
        return (x if self.levels is None else to_signed(x, self.levels)).double()

    def bound(self, x, *, estimator=None, samples=None, generator=None) -> Bound:
        """[B] nats; terms density (-log p, averaged over u) and bin_width (-D log w) for discrete data."""
        name = self._estimator(estimator)
        self._require_fitted()
        y = self._scaled(self._flat(x))
        if self.levels is None:
            return Bound({"nll": -self.log_density(y)}, "exact", True, self.dims)
        s = self.default_samples if samples is None else int(samples)
        if s < 1:
            raise UserError(f"samples must be a positive number of dequantization draws, got {samples}.")
        w = bin_width(self.levels)
        b = y.shape[0]
        variance = None
        if name == "analytic":
            density, label = -self.expected_log_density(y, w), "dequantization-analytic"
        else:
            u = torch.rand((s, *y.shape), generator=generator, device=y.device, dtype=y.dtype) - 0.5
            logp = self.log_density((y + w * u).reshape(s * b, -1)).reshape(s, b)
            if name == "importance":
                density = -(torch.logsumexp(logp, 0) - math.log(s))
            else:
                density = -logp.mean(0)
                variance = logp.var(0) / s if s > 1 else None
            label = f"{name}-s={s}"
        bins = torch.full_like(density, -self.dims * math.log(w))
        return Bound({"density": density, "bin_width": bins}, label, False, self.dims, variance)

    def sample(self, n, generator=None) -> Tensor:
        y = self.sample_density(n, generator)
        if self.levels is None:
            return y.to(torch.get_default_dtype()).reshape(n, *self.shape)
        return from_signed(y, self.levels).reshape(n, *self.shape)

    def _fit_data(self, train: Tensor, copies: int, seed: int) -> Tensor:
        """Training points for a density: y itself, or `copies` dequantized copies of y (float64)."""
        y = self._scaled(train)
        if self.levels is None:
            return y
        g = torch.Generator().manual_seed(seed)
        u = torch.rand((copies, *y.shape), generator=g, dtype=y.dtype) - 0.5
        return (y + bin_width(self.levels) * u).reshape(-1, y.shape[1])


# ---------------------------------------------------------------- gaussian
@dataclass
class GaussianConfig:
    """shrinkage: added to the covariance's diagonal ([-1, 1] units squared; 0 = maximum likelihood,
    which for discrete data is the covariance of y plus the dequantization noise w^2/12)."""

    shrinkage: float = 0.0

    def __post_init__(self):
        if self.shrinkage < 0:
            raise ValueError("shrinkage must be >= 0")


class Gaussian(_Density):
    family = "gaussian"
    estimators = ("dequantization", "importance", "analytic")

    def __init__(self, config, levels, shape):
        super().__init__(config, levels, shape)
        self.register_buffer("mean", torch.zeros(self.dims))
        self.register_buffer("scale_tril", torch.eye(self.dims))

    def _fit(self, train, valid, progress):
        y = self._scaled(train)
        if len(y) < 2:
            raise UserError("The gaussian model needs at least two training examples.")
        mean = y.mean(0)
        cov = torch.cov(y.T, correction=0).reshape(self.dims, self.dims)
        if self.levels is not None:  # the exact covariance of y + u: u is independent, var w^2/12
            cov = cov + torch.eye(self.dims, dtype=cov.dtype) * bin_width(self.levels) ** 2 / 12
        cov = cov + self.config.shrinkage * torch.eye(self.dims, dtype=cov.dtype)
        chol, bad = torch.linalg.cholesky_ex(cov)
        if bad:
            raise UserError("The gaussian model's covariance is singular; set gaussian.shrinkage > 0.")
        self.mean.copy_(mean)
        self.scale_tril.copy_(chol)

    def log_density(self, y):
        return _mvn_log_prob(y, self.mean.double(), self.scale_tril.double())

    def expected_log_density(self, y: Tensor, w: float) -> Tensor:
        """[B] E_u log N(y + u) for u ~ U(-w/2, w/2)^D: log N(y) - tr(Sigma^-1) w^2 / 24."""
        inv = torch.linalg.inv(self.scale_tril.double())
        return self.log_density(y) - inv.pow(2).sum() * w**2 / 24

    def sample_density(self, n, generator=None):
        eps = torch.randn((n, self.dims), generator=generator, dtype=torch.float64)
        return self.mean.double() + eps @ self.scale_tril.double().T


# ---------------------------------------------------------------- gaussian mixture
@dataclass
class GaussianMixtureConfig:
    """scikit-learn's GaussianMixture with full covariances.  copies: dequantized copies of discrete
    training data it is fitted to; restarts: its n_init (best training likelihood); threads: the
    BLAS/OpenMP threads it may use (1 by default: at these sizes more threads only contend, 10x
    slower on a shared 2-core machine; 0 leaves the libraries' default)."""

    components: int = 8
    restarts: int = 1
    iterations: int = 200
    reg_covar: float = 1e-6
    copies: int = 4
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if min(self.components, self.restarts, self.iterations, self.copies) < 1:
            raise ValueError("components, restarts, iterations and copies must be >= 1")
        if self.reg_covar < 0:
            raise ValueError("reg_covar must be >= 0")


class GaussianMixture(_Density):
    family = "gaussian-mixture"

    def __init__(self, config, levels, shape):
        super().__init__(config, levels, shape)
        c, d = config.components, self.dims
        self.register_buffer("log_weights", torch.full((c,), -math.log(c)))
        self.register_buffer("means", torch.zeros(c, d))
        self.register_buffer("scale_trils", torch.eye(d).repeat(c, 1, 1))

    def _fit(self, train, valid, progress):
        from sklearn.mixture import GaussianMixture as SkMixture

        cfg = self.config
        y = self._fit_data(train, cfg.copies, cfg.seed)
        if len(y) < cfg.components:
            raise UserError(f"The gaussian-mixture model needs at least {cfg.components} training "
                            f"examples for {cfg.components} components, got {len(y)}.")
        gm = SkMixture(cfg.components, covariance_type="full", reg_covar=cfg.reg_covar,
                       max_iter=cfg.iterations, n_init=cfg.restarts, random_state=cfg.seed)
        gm.fit(y.numpy())  # under _Baseline.fit's thread limit
        cov = torch.from_numpy(gm.covariances_)
        self.log_weights.copy_(torch.from_numpy(gm.weights_).log())
        self.means.copy_(torch.from_numpy(gm.means_))
        self.scale_trils.copy_(torch.linalg.cholesky(cov))
        return {"converged": bool(gm.converged_), "iterations": int(gm.n_iter_)}

    def log_density(self, y):
        per = _mvn_log_prob(y[:, None, :], self.means.double(), self.scale_trils.double())  # [N, C]
        return torch.logsumexp(per + self.log_weights.double(), dim=1)

    def sample_density(self, n, generator=None):
        z = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn((n, self.dims, 1), generator=generator, dtype=torch.float64)
        return self.means.double()[z] + (self.scale_trils.double()[z] @ eps).squeeze(-1)


@register("gaussian", GaussianConfig, "one full-covariance Gaussian (dequantized for discrete data)")
def _build_gaussian(config, levels, shape):
    return Gaussian(config, levels, shape)


@register("gaussian-mixture", GaussianMixtureConfig,
          "scikit-learn's full-covariance Gaussian mixture (dequantized for discrete data)")
def _build_gaussian_mixture(config, levels, shape):
    return GaussianMixture(config, levels, shape)
