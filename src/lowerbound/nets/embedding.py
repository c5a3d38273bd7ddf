"""Sinusoidal embedding of a continuous time t in [0, 1] (Vaswani et al. 2017; Ho et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TimeEmbedding(nn.Module):
    """t [B] in [0, 1] -> [B, dim]: sin/cos features at geometric frequencies, then a 2-layer MLP.

    t is scaled by `scale` (default 1000) so that discrete steps i/T with T = 1000 land on the
    integer positions the original DDPM embedding used.
    """

    def __init__(self, dim: int, hidden: int | None = None, scale: float = 1000.0,
                 max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale
        hidden = hidden or 4 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out_dim = hidden

    def forward(self, t: Tensor) -> Tensor:
        args = (t.float() * self.scale)[:, None] * self.freqs[None]
        return self.mlp(torch.cat([torch.sin(args), torch.cos(args)], dim=-1))
