"""Gaussian pieces of the DDPM bound: the closed-form KL between diagonal Gaussians and the
discretized Gaussian decoder log P(x_0 | x_1) (Ho et al. 2020, sec. 3.3 and eq. 13).

The decoder gives each of the K levels a bin of half-width 1/(K - 1) around its centre on [-1, 1];
the outer two bins are extended to -inf and +inf, so the K masses sum to exactly one.  Bin masses are
differences of the exact normal CDF, evaluated in log space with torch.special.log_ndtr (not the tanh
approximation of the original code) and in float64, so that bins deep in either tail keep their
precision: log(Phi(b) - Phi(a)) = log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))), computed on the
side of the mean where the CDF is small (by the symmetry Phi(b) - Phi(a) = Phi(-a) - Phi(-b)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_2PI = math.log(2 * math.pi)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, nats (broadcast shapes).

    Inputs are promoted to float64: the terms of the DDPM bound are differences of nearly equal
    variances, summed over a thousand steps, where float32 loses the answer."""
    mean1, logvar1, mean2, logvar2 = (torch.as_tensor(v).double() for v in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def log1mexp(d: Tensor) -> Tensor:
    """log(1 - exp(d)) for d <= 0, stable at both ends (Maechler 2012); gradients stay finite."""
    near = d > -math.log(2.0)
    a = torch.log(-torch.expm1(torch.where(near, d, torch.full_like(d, -1.0))))
    b = torch.log1p(-torch.exp(torch.where(near, torch.full_like(d, -1.0), d)))
    return torch.where(near, a, b)


def log_normal_interval(a: Tensor, b: Tensor) -> Tensor:
    """log(Phi(b) - Phi(a)) for standardized finite a < b, elementwise, stable in both tails."""
    flip = (a + b) > 0  # both mostly in the upper tail: use Phi(-a) - Phi(-b) instead
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + log1mexp(torch.special.log_ndtr(lo) - log_hi)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """log P(x) per element, nats, float64, for integer levels x (long, 0..K-1) under
    N(mean, exp(log_scale)^2) on the [-1, 1] scale, with bins of half-width 1/(K - 1) and the outer
    bins reaching to -inf / +inf.

    x, mean, log_scale broadcast to one shape; the result has that shape."""
    if levels < 2:
        raise ValueError(f"a discretized decoder needs at least 2 levels, got {levels}")
    mean, log_scale = mean.double(), log_scale.double()
    x = x.long()
    centre = x.double() * (2.0 / (levels - 1)) - 1.0
    half = 1.0 / (levels - 1)
    inv_std = torch.exp(-log_scale)
    a = (centre - half - mean) * inv_std
    b = (centre + half - mean) * inv_std
    bottom, top = x <= 0, x >= levels - 1
    # the three cases each evaluated only on finite, harmless arguments so no NaN reaches a gradient
    inner = ~(bottom | top)
    safe_a = torch.where(inner, a, torch.full_like(a, -1.0))
    safe_b = torch.where(inner, b, torch.full_like(b, 1.0))
    log_inner = log_normal_interval(safe_a, safe_b)
    log_bottom = torch.special.log_ndtr(b)  # Phi(b) - Phi(-inf)
    log_top = torch.special.log_ndtr(-a)  # Phi(+inf) - Phi(a)
    return torch.where(bottom, log_bottom, torch.where(top, log_top, log_inner))


def gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, exp(logvar)) elementwise, nats, float64 (the decoder for continuous data)."""
    x, mean, logvar = x.double(), mean.double(), logvar.double()
    return -0.5 * (_LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
