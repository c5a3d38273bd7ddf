"""Monotone networks for a learned noise schedule gamma(t) (Kingma et al. 2021, "Variational
Diffusion Models", Appendix H).

`MonotoneNet` is the paper's monotone network: a positive-weight linear path in t plus a sigmoid
bottleneck of `hidden` units with positive weights in and out, so f(t) is strictly increasing for
every value of its parameters.  Positivity comes from softplus of free parameters.  Its derivative
df/dt is computed in closed form beside f, since the continuous-time diffusion loss needs
gamma'(t) exactly and cheaply (no double backward).

`MonotoneSchedule` pins the ends: gamma(t) = gamma_0 + (gamma_1 - gamma_0) s(t) with
s(t) = (f(t) - f(0)) / (f(1) - f(0)) in [0, 1], so gamma(0) = gamma_0 and gamma(1) = gamma_1
exactly, fixed or learned.  With kind="linear", s(t) = t.  The net knows nothing of diffusion.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MonotoneNet(nn.Module):
    """t [B] -> (f [B], df/dt [B]), strictly increasing in t for any parameters.

    f(t) = a t + (1/n) sum_k c_k (2 sigmoid(w_k (2t - 1) + b_k) - 1), with a, c_k, w_k > 0.
    """

    def __init__(self, hidden: int = 1024):
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        self.hidden = hidden
        self.raw_a = nn.Parameter(torch.tensor(0.5413))  # softplus(0.5413) = 1: starts linear-ish
        self.raw_w = nn.Parameter(torch.randn(hidden))
        self.b = nn.Parameter(torch.randn(hidden))
        self.raw_c = nn.Parameter(torch.full((hidden,), -2.0))

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a = F.softplus(self.raw_a)
        f = a * t
        df = a.expand_as(t)
        if self.hidden:
            w, c = F.softplus(self.raw_w), F.softplus(self.raw_c)
            sig = torch.sigmoid((2.0 * t)[:, None] * w - w + self.b)  # [B, n]
            f = f + ((2.0 * sig - 1.0) * c).mean(-1)
            df = df + (4.0 * sig * (1.0 - sig) * w * c).mean(-1)
        return f, df


class MonotoneSchedule(nn.Module):
    """gamma(t) on t in [0, 1] with gamma(0) = gamma_0 < gamma(1) = gamma_1.

    kind: "learned" (MonotoneNet interior) or "linear" (s(t) = t).  learn_endpoints: whether
    gamma_0 and gamma_1 are parameters (gamma_1 = gamma_0 + softplus(.) keeps them ordered).
    Units: gamma = log(sigma^2 / alpha^2) = -log SNR, dimensionless.
    """

    def __init__(self, gamma_0: float, gamma_1: float, *, kind: Literal["learned", "linear"] =
                 "learned", learn_endpoints: bool = False, hidden: int = 1024):
        super().__init__()
        if not gamma_0 < gamma_1:
            raise ValueError(f"need gamma_0 < gamma_1, got {gamma_0} and {gamma_1}")
        if kind not in ("learned", "linear"):
            raise ValueError(f"kind must be 'learned' or 'linear', got {kind!r}")
        self.kind = kind
        self.net = MonotoneNet(hidden) if kind == "learned" else None
        self.learn_endpoints = learn_endpoints
        g0, g1 = torch.tensor(float(gamma_0)), torch.tensor(float(gamma_1))
        if learn_endpoints:  # gamma_1 = gamma_0 + softplus(raw_gap) keeps the ends ordered
            gap = g1 - g0
            self.gamma_0_param = nn.Parameter(g0)
            self.raw_gap = nn.Parameter(gap + torch.log(-torch.expm1(-gap)))  # inverse softplus
        else:
            self.register_buffer("gamma_0_param", g0)
            self.register_buffer("gamma_1_fixed", g1)

    def endpoints(self) -> tuple[Tensor, Tensor]:
        """(gamma_0, gamma_1) as scalar tensors."""
        if self.learn_endpoints:
            return self.gamma_0_param, self.gamma_0_param + F.softplus(self.raw_gap)
        return self.gamma_0_param, self.gamma_1_fixed

    def normalized(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """t [B] -> (s [B] in [0, 1] with s(0)=0, s(1)=1, ds/dt [B] > 0)."""
        if self.net is None:
            return t, torch.ones_like(t)
        ends = torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device)
        f, df = self.net(torch.cat([t, ends]))
        f0, f1 = f[-2], f[-1]
        return (f[:-2] - f0) / (f1 - f0), df[:-2] / (f1 - f0)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """t [B] -> (gamma(t) [B], dgamma/dt [B])."""
        g0, g1 = self.endpoints()
        s, ds = self.normalized(t)
        return g0 + (g1 - g0) * s, (g1 - g0) * ds
