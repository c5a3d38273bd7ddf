"""The one transform interface of the flow family (Rezende & Mohamed 2015; Papamakarios et al. 2021,
"Normalizing flows for probabilistic modeling and inference", eq. 2):

    z = f(x),   log p(x) = log N(f(x); 0, I) + log |det df/dx|

A `Bijection` maps data x to latent z and returns log |det df/dx| per example; `inverse` maps back.
An optional context (a tensor with the batch's leading size) conditions the map, for conditional
flows such as the variational dequantizer q(u | x).  zuko's transforms (vector.py) and our Glow
layers (glow.py) both keep this interface, so the family's bound code never asks which arch it has.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over every dimension but the first: [B, ...] -> [B] nats."""
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


class Bijection(nn.Module):
    """x [B, ...] -> (z [B, ...], log |det dz/dx| [B] nats); inverse(z) -> x."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def inverse_and_ladj(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x, log |det dx/dz| [B]): the inverse and its log-determinant (here by a second pass)."""
        x = self.inverse(z, context)
        return x, -self(x, context)[1]


class Compose(Bijection):
    """Bijections applied in order (x -> z); the inverse runs them backwards."""

    def __init__(self, *parts: Bijection):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for part in self.parts:
            x, ladj = part(x, context)
            total = total + ladj
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        for part in reversed(self.parts):
            z = part.inverse(z, context)
        return z


class ActNorm(Bijection):
    """z = (x + shift) * exp(log_scale) per channel (dim 1), shared over any further dims (Glow's
    actnorm, Kingma & Dhariwal 2018, sec. 3.1).  log |det| = (positions per channel) * sum log_scale.

    It starts as the identity and is learned; Glow's data-dependent initialisation is left out on
    purpose: it would make the weights depend on which batch a process saw first, which breaks a
    resumed or multi-process run's reproducibility."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = (x + self._view(self.shift, x)) * self._view(self.log_scale, x).exp()
        positions = x[0, 0].numel()
        return z, (positions * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return z * self._view(-self.log_scale, z).exp() - self._view(self.shift, z)
