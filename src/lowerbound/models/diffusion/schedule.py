"""Discrete-time noise schedules for the DDPM forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, 1 - abar_t).

"linear": betas evenly spaced from 1e-4 to 0.02 for T = 1000 (Ho et al. 2020, "Denoising Diffusion
Probabilistic Models"), both ends scaled by 1000 / T for other T so the chain keeps its total noise.
"cosine": abar_t = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2), s = 0.008, betas clipped to
0.999 (Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", eq. 17).

Everything is kept in float64 and checked once here (0 < beta < 1), so no step re-checks it.
Steps are numbered i = 1..T; arrays of length T + 1 hold index 0 for "no noise" (abar_0 = 1).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ...errors import UserError

ScheduleName = Literal["linear", "cosine"]


def linear_betas(timesteps: int) -> Tensor:
    """[T] float64: 1e-4 .. 0.02 scaled by 1000 / T (Ho et al. 2020)."""
    scale = 1000.0 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """[T] float64 from the cosine abar of Nichol & Dhariwal 2021, eq. 17, clipped to max_beta."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


_BUILDERS = {"linear": linear_betas, "cosine": cosine_betas}


class Schedule:
    """The forward process's constants, float64, indexed by step i = 0..T (index 0 = clean data).

    betas, alphas, alpha_bar: [T + 1] (betas[0] = 0, alpha_bar[0] = 1).
    posterior_variance: [T + 1], variance of q(x_{i-1} | x_i, x_0); 0 at i = 1 (x_0 is then known).
    posterior_coef_x0, posterior_coef_xt: [T + 1], the mean of q(x_{i-1} | x_i, x_0) is
        coef_x0 * x_0 + coef_xt * x_i (Ho et al. 2020, eq. 7).
    """

    def __init__(self, betas: Tensor, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise UserError("A noise schedule needs at least one timestep.")
        if not bool(((betas > 0) & (betas < 1)).all()):
            bad = betas[~((betas > 0) & (betas < 1))][0].item()
            raise UserError(f"The {name} schedule with T = {betas.numel()} has a beta of {bad:.4g}, "
                            "outside (0, 1); use more timesteps or another schedule.")
        self.name = name
        self.timesteps = int(betas.numel())
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, betas])
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        one_minus = (1 - self.alpha_bar).clamp(min=1e-300)  # index 0 only; never used as a divisor
        self.posterior_variance = self.betas * (1 - abar_prev) / one_minus
        self.posterior_variance[0] = 0.0
        self.posterior_coef_x0 = abar_prev.sqrt() * self.betas / one_minus
        self.posterior_coef_xt = self.alphas.sqrt() * (1 - abar_prev) / one_minus
        self.posterior_coef_x0[0], self.posterior_coef_xt[0] = 1.0, 0.0

    @staticmethod
    def make(name: ScheduleName, timesteps: int) -> Schedule:
        if name not in _BUILDERS:
            raise UserError(f"Unknown schedule {name!r}; choose one of: {', '.join(_BUILDERS)}.")
        if timesteps < 1:
            raise UserError(f"timesteps must be at least 1, got {timesteps}.")
        return Schedule(_BUILDERS[name](timesteps), name)

    def at(self, name: str, i: Tensor, ndim: int) -> Tensor:
        """Constant `name` at steps i [B] (long), float64, shaped [B, 1, ...] for broadcasting to ndim."""
        values = getattr(self, name).to(i.device)[i]
        return values.reshape(-1, *([1] * (ndim - 1)))

    def log_variance_range(self) -> tuple[Tensor, Tensor]:
        """[T + 1] each: log of the small (posterior) and large (beta) variances, the two ends that
        learned_range interpolates between (Nichol & Dhariwal 2021, eq. 15).  The posterior variance
        is 0 at step 1, so its log is clipped to the value at step 2 there (as in their code)."""
        small = self.posterior_variance.clone()
        if self.timesteps >= 2:
            small[1] = small[2]
        else:
            small[1] = self.betas[1]
        small[0] = small[1]
        large = self.betas.clone()
        large[0] = large[1]
        return small.log(), large.log()

    def prior_kl(self, x0: Tensor) -> Tensor:
        """KL(q(x_T | x_0) || N(0, I)) per element of x0 (same shape), nats, float64."""
        abar = self.alpha_bar[-1].item()
        x0 = x0.double()
        return 0.5 * (abar * x0 ** 2 + (1 - abar) - 1 - math.log(1 - abar))

    def log_snr(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """The continuous-time process the ODE likelihood runs on (ode.py): gamma = -log SNR =
        log((1 - abar) / abar), known at the steps t_i = i / T, i = 1..T, and interpolated in t between
        them by the cubic Hermite spline with central-difference slopes (one-sided at the ends).  It
        passes through every step and has a continuous derivative: a linear interpolation's slope
        jumps at each of the T steps, and an adaptive solver then crawls (measured: 10x the function
        evaluations at T = 50).  t [N] in [1/T, 1] -> (gamma(t) [N], dgamma/dt [N]) float64."""
        if self.timesteps < 2:
            raise UserError("The ODE likelihood needs at least 2 timesteps.")
        T = self.timesteps
        g = (torch.log1p(-self.alpha_bar[1:]) - torch.log(self.alpha_bar[1:])).to(t.device)  # [T], t_i = i/T
        m = torch.gradient(g, spacing=1.0)[0]  # dgamma per step
        pos = t.double() * T
        j = (pos.floor().long().clamp(1, T - 1) - 1)  # segment [t_{j+1}, t_{j+2}] in 0-based g
        s = pos - (j + 1)
        s2, s3 = s * s, s * s * s
        gamma = ((2 * s3 - 3 * s2 + 1) * g[j] + (s3 - 2 * s2 + s) * m[j] + (3 * s2 - 2 * s3) * g[j + 1]
                 + (s3 - s2) * m[j + 1])
        slope = ((6 * s2 - 6 * s) * g[j] + (3 * s2 - 4 * s + 1) * m[j] + (6 * s - 6 * s2) * g[j + 1]
                 + (3 * s2 - 2 * s) * m[j + 1])
        return gamma, slope * T
