"""A plain multilayer perceptron, tensor -> tensor (the workhorse of vector-data models)."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """[B, d_in] -> [B, d_out] through len(hidden) SiLU layers (optionally LayerNorm, dropout)."""

    def __init__(self, d_in: int, d_out: int, hidden: tuple[int, ...] = (256, 256), *,
                 dropout: float = 0.0, norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        d = d_in
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if norm:
                layers.append(nn.LayerNorm(h))
            layers.append(nn.SiLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        layers.append(nn.Linear(d, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
