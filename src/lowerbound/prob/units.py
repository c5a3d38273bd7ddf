"""Units and the discrete-data accounting of design.md: levels, the [-1, 1] scale, bits per dimension.

Data are integer levels 0..K-1.  Continuous models see y = 2x/(K-1) - 1 in [-1, 1], where each
level owns a bin of width 2/(K-1); a density p(y) is turned into a bound on the discrete
probability by dequantization: log P(x) >= E_u[log p(y + u)] + D log(bin width).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LN2 = math.log(2.0)


def to_signed(x: Tensor, levels: int) -> Tensor:
    """Integer levels 0..K-1 -> floats in [-1, 1] (bin centres)."""
    return x.to(torch.get_default_dtype()) * (2.0 / (levels - 1)) - 1.0


def from_signed(y: Tensor, levels: int) -> Tensor:
    """Floats on the [-1, 1] scale -> nearest integer level, clamped to 0..K-1 (long tensor)."""
    return torch.round((y + 1.0) * (levels - 1) / 2.0).clamp(0, levels - 1).long()


def bin_width(levels: int) -> float:
    """Width of one level's bin on the [-1, 1] scale: 2 / (K - 1)."""
    return 2.0 / (levels - 1)


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization: y + u, u ~ U(-w/2, w/2) with w the bin width. Returns floats."""
    y = to_signed(x, levels)
    u = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype) - 0.5
    return y + u * bin_width(levels)


def dequantization_log_jacobian(levels: int, dims: int) -> float:
    """D log(bin width) in nats: add to log p(y + u) to bound log P(x) of the discrete data."""
    return dims * math.log(bin_width(levels))


def nats_to_bits_per_dim(nats: Tensor | float, dims: int) -> Tensor | float:
    """Nats per example -> bits per dimension."""
    return nats / (dims * LN2)
