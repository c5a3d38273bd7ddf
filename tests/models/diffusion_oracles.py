"""Exact denoisers with known bounds, shared by the diffusion model and sampler tests.

PointMassNet: the exact denoiser of a point mass x* (every example is x*), optionally off by a known
constant delta in eps, read out as eps, x0 or v; with learned_range its variance channel is a
constant c.  With it every term of the DDPM bound is a closed form (closed_form_bound below, written
from Ho et al.'s eq. 11 mean mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(alpha_t), not from
the model's code path through x0_hat).

The point mass's terms do not depend on x_t, so they cannot see how x_t is drawn.  SmoothNet is a
fixed non-linear function of (x_t, t) acting on every element alone: the bound's expectation over x_t
is then a sum of one-dimensional integrals, computed by quadrature (quadrature_terms) from `Chain`, the
reverse process written from the papers in numpy.  Spy records a real net's calls so that `replay_bound`
recomputes the bound from the very draws the model used.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import log_ndtr
from scipy.stats import norm
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


def point_model(x_star, *, parameterization="eps", variance="fixed_large", delta=0.0, c=None, T=1000,
                schedule="linear", loss="simple", levels=17, **kw):
    """A Diffusion whose net is PointMassNet for the point mass x* (integer levels [1, *shape])."""
    from lowerbound.models.diffusion import Diffusion, Schedule

    sched = Schedule.make(schedule, T)
    net = PointMassNet(sched, x_star.double() * 2 / (levels - 1) - 1, parameterization, delta, c, levels)
    if variance == "learned_range" and loss == "simple":
        loss = "hybrid"
    return Diffusion(net, levels=levels, shape=tuple(x_star.shape[1:]), timesteps=T, schedule=schedule,
                     parameterization=parameterization, variance=variance, loss=loss, **kw)


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
    small[1] = post_var[2] if T >= 2 else betas[1]  # T = 1: both variances are beta_1
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


# ---------------------------------------------------------------- a net whose terms depend on x_t
def smooth_out(x, s, k=None, m=np):
    """A fixed non-linear function of (x_t, s = t/T), elementwise; `m` is numpy or torch.
    k None: the mean channel (eps, x0 or v); k an int: the categorical logit of level k."""
    if k is None:
        return 0.6 * m.sin(2.5 * x + 3.0 * s) + 0.4 * x * s
    return 0.8 * m.cos(1.3 * k + 2.0 * x - s) + 0.5 * k * x * s


def smooth_var(x, s, m=np):
    """learned_range's interpolation weight in [-1, 1]."""
    return m.tanh(1.5 * x - 2.0 * s + 0.3)


class SmoothNet(nn.Module):
    """Acts on every element of x_t [B, C, ...] alone with smooth_out / smooth_var (no parameters):
    C channels (K * C level-major logits for categorical), then C variance channels if learned."""

    def __init__(self, parameterization="eps", learned=False, levels=None):
        super().__init__()
        self.parameterization, self.learned, self.levels = parameterization, learned, levels

    def forward(self, x_t, t):
        x = x_t.double()
        s = t.double().reshape(-1, *([1] * (x.dim() - 1)))
        if self.parameterization == "categorical":
            out = torch.cat([smooth_out(x, s, k, torch) for k in range(self.levels)], 1)
        else:
            out = smooth_out(x, s, None, torch)
        if self.learned:
            out = torch.cat([out, smooth_var(x, s, torch)], 1)
        return out


def _normal_nodes(n=96):
    """Gauss-Hermite nodes and weights for E over N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / math.sqrt(2 * math.pi)


def _log_normal_mass(a, b):
    """log(Phi(b) - Phi(a)) by scipy, each interval taken on the side of 0 where it is small."""
    flip = (a + b) > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    return norm.logcdf(hi) + np.log1p(-np.exp(norm.logcdf(lo) - norm.logcdf(hi)))


class Chain:
    """The forward process's constants as numpy arrays (index t = 0..T) and the reverse step written
    from the papers: Ho et al. 2020 eq. 7 (the posterior q(x_{t-1} | x_t, x_0)), eq. 11 (the
    eps-parameterized mean), eq. 13 (the decoder); Nichol & Dhariwal 2021 eq. 15 (learned_range)."""

    def __init__(self, schedule, levels, parameterization, variance, clip=False):
        self.T, self.clip = schedule.timesteps, clip
        self.beta = schedule.betas.numpy()
        self.abar = np.cumprod(1 - self.beta)
        self.levels, self.parameterization, self.variance = levels, parameterization, variance

    def post_var(self, t):
        return self.beta[t] * (1 - self.abar[t - 1]) / (1 - self.abar[t])

    def q_mean(self, t, y, xt):
        b, a = self.beta, self.abar
        return (math.sqrt(a[t - 1]) * b[t] * y + math.sqrt(1 - b[t]) * (1 - a[t - 1]) * xt) / (1 - a[t])

    def p(self, t, xt, out, out_var=None):
        """(mean, variance) of p(x_{t-1} | x_t) (the decoder's Gaussian at t = 1) for net output
        `out` (categorical: logits [K, *xt.shape]) and learned_range weights `out_var`."""
        b, a = self.beta, self.abar
        sa, s1 = math.sqrt(a[t]), math.sqrt(1 - a[t])
        if self.parameterization == "eps" and not self.clip:
            mean = (xt - b[t] / s1 * out) / math.sqrt(1 - b[t])
        else:
            if self.parameterization == "eps":
                x0 = (xt - s1 * out) / sa
            elif self.parameterization == "x0":
                x0 = out
            elif self.parameterization == "v":
                x0 = sa * xt - s1 * out
            else:  # categorical: net logits + log N(x_t; sqrt(abar) c_k, 1 - abar), normalized over k
                centres = np.linspace(-1, 1, self.levels).reshape(-1, *([1] * np.ndim(xt)))
                logits = out - (xt - sa * centres) ** 2 / (2 * (1 - a[t]))
                post = np.exp(logits - logits.max(0))
                x0 = (post * centres).sum(0) / post.sum(0)
            if self.clip:
                x0 = np.clip(x0, -1.0, 1.0)
            mean = (math.sqrt(a[t - 1]) * b[t] * x0 + math.sqrt(1 - b[t]) * (1 - a[t - 1]) * xt) / (1 - a[t])
        small = self.post_var(t) if t >= 2 else (self.post_var(2) if self.T >= 2 else b[1])
        logv = {"fixed_large": math.log(b[t]), "fixed_small": math.log(small)}.get(self.variance)
        if self.variance == "learned_range":
            f = (out_var + 1) / 2
            logv = f * math.log(b[t]) + (1 - f) * math.log(small)
        return mean, np.exp(logv) * np.ones_like(xt)

    def term(self, t, x, y, xt, out, out_var=None):
        """L_t elementwise: the KL for t >= 2, -log p(x_0 | x_1) for t = 1 (levels None: a density)."""
        mean, var = self.p(t, xt, out, out_var)
        if t >= 2:
            v_q = self.post_var(t)
            return 0.5 * (np.log(var / v_q) + v_q / var + (self.q_mean(t, y, xt) - mean) ** 2 / var - 1)
        if self.levels is None:
            return 0.5 * (np.log(2 * math.pi * var) + (y - mean) ** 2 / var)
        sd, h = np.sqrt(var), 1.0 / (self.levels - 1)
        a = np.where(x > 0, (y - h - mean) / sd, -np.inf)
        b = np.where(x < self.levels - 1, (y + h - mean) / sd, np.inf)
        return -_log_normal_mass(a, b)

    def prior(self, y):
        a = self.abar[self.T]
        return 0.5 * (a * y ** 2 + (1 - a) - 1 - math.log(1 - a))


def quadrature_terms(schedule, levels, level, parameterization, variance, clip=False):
    """(prior, diffusion, reconstruction) in nats for ONE element of data at `level` under SmoothNet,
    each E over x_t ~ q(x_t | x_0) by Gauss-Hermite quadrature, independently of the model's code.
    clip: x0_hat clipped to [-1, 1] (the integrand then has kinks: more nodes)."""
    chain = Chain(schedule, levels, parameterization, variance, clip)
    y = np.linspace(-1, 1, levels)[level]
    n, w = _normal_nodes(150 if clip else 96)
    expected = []
    for t in range(1, chain.T + 1):
        xt = math.sqrt(chain.abar[t]) * y + math.sqrt(1 - chain.abar[t]) * n
        s = t / chain.T
        out = (np.stack([smooth_out(xt, s, k) for k in range(levels)]) if parameterization == "categorical"
               else smooth_out(xt, s))
        expected.append(float(w @ chain.term(t, level, y, xt, out, smooth_var(xt, s))))
    return chain.prior(y), sum(expected[1:]), expected[0]


class Spy(nn.Module):
    """Wraps a net and records every call's (x_t, t, output), so a bound can be recomputed from the
    very draws it used."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x_t, t):
        out = self.inner(x_t, t)
        self.calls.append((x_t.detach().double().numpy(), t.detach().double().numpy(),
                           out.detach().double().numpy()))
        return out


def replay_bound(chain, x, y, calls):
    """(diffusion, reconstruction) nats for ONE example x (levels, or floats with y = x) from a Spy's
    calls: every row is that example's; t = 1 rows are averaged, t >= 2 rows summed."""
    recon, diff = [], 0.0
    c = y.shape[0]
    for xt_rows, s_rows, out_rows in calls:
        for xt, s, out in zip(xt_rows, s_rows, out_rows):
            t = int(round(s * chain.T))
            if chain.parameterization == "categorical":
                mean_out = out[:chain.levels * c].reshape(chain.levels, *xt.shape)
            else:
                mean_out = out[:c]
            out_var = out[-c:] if chain.variance == "learned_range" else None
            value = float(chain.term(t, x, y, xt, mean_out, out_var).sum())
            if t == 1:
                recon.append(value)
            else:
                diff += value
    return diff, float(np.mean(recon))
