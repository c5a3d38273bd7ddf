"""Variational dequantization (Ho et al. 2019, "Flow++", sec. 3.1): a conditional flow q(u | x) on the
unit cube [0, 1)^D, trained jointly with the model, in place of uniform noise:

    log P(x) >= E_{u ~ q(u|x)} [ log p(y + w (u - 1/2)) + D log w - log q(u | x) ]

u = sigmoid(a), a = g^{-1}(eps; x), eps standard logistic, with g a conditional zuko coupling flow
whose context is a learned embedding of the discrete example (its [-1, 1] values through a small
MLP).  Then log q(u | x) = log Logistic(eps) + log |det dg/da| - sum_d log sigmoid'(a_d), the change
of variables through both maps.  The base is logistic rather than Gaussian and the hyper-networks'
last layers start at zero, so that g starts as the identity and q as exactly uniform (log q = 0):
training starts from uniform dequantization and can only move away from it where that pays.
Both directions of the coupling flows used here cost one pass, so drawing u is cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vector import ZukoBijection


def log_logistic(eps: Tensor) -> Tensor:
    """log density of the standard logistic, summed over dim 1: [N, D] -> [N]."""
    return (F.logsigmoid(eps) + F.logsigmoid(-eps)).sum(1)


class VariationalDequantizer(nn.Module):
    """q(u | x) for flattened examples y [B, D] on the [-1, 1] scale."""

    def __init__(self, dims: int, *, arch: str = "nsf", transforms: int = 2,
                 hidden: tuple[int, ...] = (128,), context: int = 32, bins: int = 8):
        super().__init__()
        width = hidden[0] if hidden else 64
        self.embed = nn.Sequential(nn.Linear(dims, width), nn.ReLU(), nn.Linear(width, context))
        self.flow = ZukoBijection(arch, dims, context=context, transforms=transforms, hidden=hidden,
                                  bins=bins, passes=2)
        for module in self.flow.modules():
            if isinstance(getattr(module, "hyper", None), nn.Sequential):
                nn.init.zeros_(module.hyper[-1].weight)
                nn.init.zeros_(module.hyper[-1].bias)

    def sample(self, y: Tensor, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n draws u ~ q(u | y) for y [B, D]: (u [n, B, D] in (0, 1), log q(u | y) [n, B] nats)."""
        b, d = y.shape
        tiny = torch.finfo(y.dtype).eps
        unif = torch.rand((n * b, d), generator=generator, device=y.device, dtype=y.dtype)
        unif = unif.clamp(tiny, 1 - tiny)
        eps = unif.log() - (-unif).log1p()  # standard logistic
        a, ladj = self.flow.inverse_and_ladj(eps, self.embed(y).repeat(n, 1))  # log |det da / d eps|
        log_q = log_logistic(eps) - ladj - log_logistic(a)  # sigmoid'(a) = logistic density at a
        return torch.sigmoid(a).view(n, b, d), log_q.view(n, b)
