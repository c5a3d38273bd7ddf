"""Any denoiser net(x_t, t) with its noise schedule, scored by our DDPM bound (Ho et al. 2020, eq. 5).

The net may predict eps (Ho et al. 2020), x0, or v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho
2022), with fixed variances (beta_t or the posterior's) or learned_range (Nichol & Dhariwal 2021).  The
schedule is given as betas or as alpha_bar, T numbers each.  The bound is `Diffusion.bound` itself:
prior KL at T, KL terms t = 2..T, the discretized Gaussian decoder at t = 1 on the data's K levels,
mapped to [-1, 1] as y = 2x/(K-1) - 1 (design.md), the layout diffusers and most DDPM code train on.

Time conventions: our step i = 1..T is the i-th noising step, alpha_bar_i = prod_{j<=i} (1 - beta_j),
and our net sees t = i / T.  `NetTime` hands the foreign net its own time for the same step:
    "index"   i - 1 in 0..T-1   (diffusers, improved-diffusion, denoising-diffusion-pytorch, Ho's code)
    "step"    i in 1..T
    "unit"    i / T            (lowerbound's own nets)
A step's time is passed as an exact integer (long); the probability-flow ODE (estimator "ode") asks
between the steps, where the time is passed as a float on the same scale.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..models.diffusion import Diffusion, Schedule

TimeConvention = Literal["index", "step", "unit"]
_PREDICTIONS = {"eps": "eps", "x0": "x0", "v": "v"}
_VARIANCES = ("fixed_small", "fixed_large", "learned_range")


class NetTime(nn.Module):
    """A foreign net as our net: forward(x_t [B, *shape], t [B] = i / T) calls net(x_t, its time) and
    returns a tensor (a diffusers output's `.sample`, a tuple's first element)."""

    def __init__(self, net: Callable, timesteps: int, time: TimeConvention = "index"):
        super().__init__()
        if time not in ("index", "step", "unit"):
            raise UserError(f"Unknown time convention {time!r}; choose one of: index, step, unit.")
        self.net, self.timesteps, self.time = net, int(timesteps), time

    def foreign_time(self, t: Tensor) -> Tensor:
        """t [B] on our scale -> the net's time [B]: long at the steps, float between them.  A t within
        T * 1e-6 of a step (16x float32's rounding of i / T) counts as that step."""
        if self.time == "unit":
            return t
        pos = t.double() * self.timesteps
        step = pos.round()
        if bool(((pos - step).abs() <= self.timesteps * 1e-6).all()):
            pos = step.long()
        return pos - 1 if self.time == "index" else pos

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        s = self.foreign_time(t)
        out = self.net(x, s if s.dtype == torch.long else s.to(x.dtype))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, Tensor):
            out = getattr(out, "sample", out)  # diffusers' UNet2DOutput
        if not isinstance(out, Tensor):
            raise UserError(f"The denoiser returned a {type(out).__name__}; it must return a tensor "
                            "(or an object whose .sample is one).")
        return out


def betas_of(betas=None, alpha_bar=None) -> Tensor:
    """The T betas, float64, from exactly one of betas [T] or alpha_bar [T] (abar_1..abar_T)."""
    if (betas is None) == (alpha_bar is None):
        raise UserError("Give the noise schedule as exactly one of betas= or alpha_bar=.")
    if betas is not None:
        return torch.as_tensor(betas, dtype=torch.float64).detach().cpu().flatten()
    abar = torch.as_tensor(alpha_bar, dtype=torch.float64).detach().cpu().flatten()
    if abar.numel() < 1 or not bool(((abar > 0) & (abar < 1)).all()):
        raise UserError("alpha_bar must hold T values in (0, 1), the cumulative products of 1 - beta.")
    previous = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return 1 - abar / previous


def from_denoiser(net: Callable, *, shape: tuple[int, ...], levels: int | None = 256, betas=None,
                  alpha_bar=None, prediction: str = "eps", variance: str = "fixed_large",
                  time: TimeConvention = "index", clip_x0: bool = False, chunk: int = 4096) -> Diffusion:
    """A `Diffusion` whose net is `net` and whose schedule is `betas` (or `alpha_bar`).

    net(x_t [B, *shape] on the [-1, 1] scale, time [B]) -> [B, C, ...] (C = shape[0]; 2C for
    learned_range: the mean's channels, then the interpolation weights in [-1, 1]).
    prediction: "eps", "x0" or "v".  variance: "fixed_small", "fixed_large" or "learned_range".
    time: the net's time convention (module docstring).  levels: K of the discrete data (None:
    continuous data, a Gaussian decoder).  clip_x0: clip the predicted x0 to [-1, 1] in every step, as
    many samplers do (the bound is then that of the clipped sampler).  chunk: rows per net call."""
    if prediction not in _PREDICTIONS:
        raise UserError(f"Unknown prediction {prediction!r}; choose one of: {', '.join(_PREDICTIONS)}.")
    if variance not in _VARIANCES:
        raise UserError(f"Unknown variance {variance!r}; choose one of: {', '.join(_VARIANCES)}.")
    schedule = Schedule(betas_of(betas, alpha_bar), name="given")
    # our training objectives still work on the adapted model (fine-tuning); learned_range's needs the bound
    loss = "hybrid" if variance == "learned_range" else "simple"
    return Diffusion(NetTime(net, schedule.timesteps, time), levels=levels, shape=tuple(shape),
                     schedule=schedule, parameterization=_PREDICTIONS[prediction], variance=variance,
                     loss=loss, clip_x0=clip_x0, chunk=chunk)
