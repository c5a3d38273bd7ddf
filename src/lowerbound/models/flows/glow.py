"""Glow: the multi-scale image flow (Kingma & Dhariwal 2018, "Glow: Generative flow with invertible
1x1 convolutions"; the multi-scale architecture of Dinh et al. 2017, "Density estimation using Real
NVP", sec. 3.6), on the `Bijection` interface of base.py:

    per scale:  squeeze (C, H, W) -> (4C, H/2, W/2)
                `steps` x [actnorm -> invertible 1x1 convolution -> affine coupling]
                factor-out: half the channels leave as latents, standardised by a prior whose mean
                and log-scale are a zero-initialised conv net of the half that stays (Glow's
                learned split prior, written as an affine coupling so it is one more bijection)

The latents that left at each scale and the last scale's output are flattened and concatenated, so
z has the data's D dimensions and the base is N(0, I).  Every log-determinant is exact: actnorm
H W sum log s, the 1x1 convolution H W log |det W|, the couplings sum log s of their scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...nets.coupling import CouplingCNN
from .base import ActNorm, Bijection, Compose


class Squeeze(Bijection):
    """[B, C, H, W] -> [B, 4C, H/2, W/2]: each 2x2 patch becomes 4 channels (volume-preserving)."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        z = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return z, x.new_zeros(b)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        b, c4, h, w = z.shape
        c = c4 // 4
        return z.view(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class InvConv1x1(Bijection):
    """z = W x at every position, W a learned invertible C x C matrix, started as a random rotation;
    log |det| = H W log |det W| (Glow sec. 3.2)."""

    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.weight = nn.Parameter(q)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        c = x.shape[1]
        logdet = torch.linalg.slogdet(self.weight).logabsdet * x[0, 0].numel()
        return F.conv2d(x, self.weight.view(c, c, 1, 1)), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        c = z.shape[1]
        return F.conv2d(z, torch.linalg.inv(self.weight).view(c, c, 1, 1))


class AffineCoupling(Bijection):
    """The first `keep` channels pass unchanged and set, through a conv net, a shift and a scale for
    the rest: z_b = (x_b + t(x_a)) * s(x_a) with s = sigmoid(h + 2) in (0, 1) (Glow's choice, which
    starts near the identity and cannot blow up).  With `prior=True` the map is Glow's learned split
    prior instead: z_b = (x_b - mu(x_a)) * exp(-log_sigma(x_a)), so z_b ~ N(0, I) means
    x_b ~ N(mu, sigma^2)."""

    def __init__(self, channels: int, keep: int, width: int, dropout: float = 0.0, prior: bool = False):
        super().__init__()
        self.keep, self.prior = keep, prior
        self.net = CouplingCNN(keep, 2 * (channels - keep), width, dropout)

    def _shift_log_scale(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x_a)
        shift, raw = h[:, 0::2], h[:, 1::2]
        if self.prior:  # log sigma soft-clamped to (-3, 3): an unbounded exp is a sampling hazard
            return -shift, -3.0 * torch.tanh(raw / 3.0)
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, :self.keep], x[:, self.keep:]
        shift, log_scale = self._shift_log_scale(x_a)
        z_b = (x_b + shift) * log_scale.exp()
        return torch.cat([x_a, z_b], 1), log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        z_a, z_b = z[:, :self.keep], z[:, self.keep:]
        shift, log_scale = self._shift_log_scale(z_a)
        return torch.cat([z_a, z_b * (-log_scale).exp() - shift], 1)


def flow_step(channels: int, width: int, dropout: float) -> Bijection:
    """One Glow step: actnorm, invertible 1x1 convolution, affine coupling."""
    return Compose(ActNorm(channels), InvConv1x1(channels),
                   AffineCoupling(channels, channels // 2, width, dropout))


class Glow(Bijection):
    """x [B, C, H, W] -> z [B, C H W] over `scales` levels of `steps` flow steps each."""

    def __init__(self, shape: tuple[int, int, int], *, scales: int = 2, steps: int = 8, width: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        c, h, w = shape
        if h % 2**scales or w % 2**scales:
            from ...errors import UserError

            raise UserError(f"Glow with {scales} scales needs a height and width divisible by "
                            f"{2**scales}, got {h}x{w}; lower model.scales.")
        self.levels = nn.ModuleList()
        self.sizes: list[int] = []  # dimensions leaving at each scale (the last: what remains)
        for s in range(scales):
            c, h, w = 4 * c, h // 2, w // 2
            parts = [Squeeze()] + [flow_step(c, width, dropout) for _ in range(steps)]
            if s < scales - 1:
                keep = c // 2
                parts.append(AffineCoupling(c, keep, width, dropout, prior=True))
                self.sizes.append((c - keep) * h * w)
                c = keep
            self.levels.append(Compose(*parts))
        self.sizes.append(c * h * w)
        self._last_shape = (c, h, w)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out, total = [], x.new_zeros(x.shape[0])
        for i, level in enumerate(self.levels):
            x, ladj = level(x)
            total = total + ladj
            if i < len(self.levels) - 1:
                keep = level.parts[-1].keep
                out.append(x[:, keep:].flatten(1))
                x = x[:, :keep]
        out.append(x.flatten(1))
        return torch.cat(out, 1), total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        pieces = list(torch.split(z, self.sizes, dim=1))
        x = pieces[-1].view(z.shape[0], *self._last_shape)
        for i in reversed(range(len(self.levels))):
            level = self.levels[i]
            if i < len(self.levels) - 1:
                gone = pieces[i].view(z.shape[0], -1, *x.shape[2:])
                x = torch.cat([x, gone], 1)
            x = level.inverse(x)
        return x
