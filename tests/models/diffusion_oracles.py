"""Exact denoisers with known bounds, shared by the diffusion model and sampler tests.

PointMassNet: the exact denoiser of a point mass x* (every example is x*), optionally off by a known
constant delta in eps, read out as eps, x0 or v; with learned_range its variance channel is a
constant c.  With it every term of the DDPM bound is a closed form (closed_form_bound below, written
from Ho et al.'s eq. 11 mean mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(alpha_t), not from
the model's code path through x0_hat).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import log_ndtr
from torch import nn


class PointMassNet(nn.Module):
    def __init__(self, schedule, y_star, parameterization="eps", delta=0.0, learned_c=None, levels=17):
        super().__init__()
        self.levels = levels
        self.abar = schedule.alpha_bar
        self.T = schedule.timesteps
        self.register_buffer("y_star", y_star.double())
        self.parameterization = parameterization
        self.delta = nn.Parameter(torch.tensor(float(delta), dtype=torch.float64))
        self.c = None
        if learned_c is not None:
            self.c = nn.Parameter(torch.tensor(float(learned_c), dtype=torch.float64))

    def forward(self, x_t, t):
        i = torch.round(t.double() * self.T).long()
        abar = self.abar[i].reshape(-1, *([1] * (x_t.dim() - 1)))
        sa, s1 = abar.sqrt(), (1 - abar).sqrt()
        xt = x_t.double()
        eps = (xt - sa * self.y_star) / s1 + self.delta
        x0 = (xt - s1 * eps) / sa
        if self.parameterization == "categorical":  # logits sure of x* (delta must be 0)
            level = torch.round((self.y_star + 1) * (self.levels - 1) / 2).long()
            onehot = torch.nn.functional.one_hot(level, self.levels).movedim(-1, 1).double()  # [1, K, C, ...]
            out = (50.0 * onehot).flatten(1, 2).expand(x_t.shape[0], *([-1] * (x_t.dim() - 1)))
        else:
            out = {"eps": eps, "x0": x0, "v": sa * eps - s1 * x0}[self.parameterization]
        if self.c is not None:
            out = torch.cat([out, self.c * torch.ones_like(xt)], 1)
        return out


def closed_form_bound(schedule, levels, x_star, variance, delta=0.0, c=None, per_step=False):
    """(prior, diffusion, reconstruction) in nats, numpy float64, for one example x* (integer levels);
    with per_step, diffusion is the array of its T - 1 terms L_2..L_T."""
    T = schedule.timesteps
    betas = schedule.betas.numpy()
    abar = schedule.alpha_bar.numpy()
    alphas = 1 - betas
    y = np.asarray(x_star, dtype=np.float64) * 2 / (levels - 1) - 1
    d = y.size
    post_var = np.zeros(T + 1)
    post_var[2:] = betas[2:] * (1 - abar[1:-1]) / (1 - abar[2:])
    small = post_var.copy()
    small[1] = post_var[2]
    large = betas.copy()
    with np.errstate(divide="ignore"):  # log 0 at index 0, never used
        logv = {"fixed_small": np.log(small), "fixed_large": np.log(large)}.get(variance)
    if variance == "learned_range":
        f = (c + 1) / 2
        with np.errstate(divide="ignore"):
            logv = f * np.log(large) + (1 - f) * np.log(small)
    prior = 0.5 * np.sum(abar[T] * y ** 2 + (1 - abar[T]) - 1 - np.log(1 - abar[T]))
    steps = []
    for t in range(2, T + 1):
        # model mean minus posterior mean: only the eps error delta moves it (Ho et al. eq. 11)
        shift = -betas[t] / (math.sqrt(alphas[t]) * math.sqrt(1 - abar[t])) * delta
        v_p, v_q = math.exp(logv[t]), post_var[t]
        steps.append(d * 0.5 * (math.log(v_p / v_q) + v_q / v_p + shift ** 2 / v_p - 1))
    diffusion = np.array(steps) if per_step else float(np.sum(steps))
    # decoder: mean = x* + the same shift at t = 1, std exp(logv[1] / 2), bins of half-width 1/(K-1)
    mean = y - betas[1] / (math.sqrt(alphas[1]) * math.sqrt(1 - abar[1])) * delta
    std, h = math.exp(0.5 * logv[1]), 1.0 / (levels - 1)
    lo = np.where(np.asarray(x_star) == 0, -np.inf, (y - h - mean) / std)
    hi = np.where(np.asarray(x_star) == levels - 1, np.inf, (y + h - mean) / std)
    # all bins here hold their mean near the centre, so the plain difference is accurate
    mass = np.exp(log_ndtr(hi)) - np.exp(log_ndtr(lo))
    reconstruction = -np.sum(np.log(mass))
    return prior, diffusion, reconstruction
