"""`Diffusion`: the discrete-time diffusion model and its variational bound, in nats per example.

Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (eq. 5, the bound; eq. 14, L_simple) and
Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (learned_range variances,
the hybrid loss, importance-sampled timesteps).  The v parameterization is Salimans & Ho 2022.
The "categorical" parameterization (discrete data only) reads the net's output as K logits per
dimension, adds the exact Gaussian log-likelihood log q(x_t | x_0 = level k) of each level and takes
x0_hat as the mean level under that posterior: at low noise the likelihood snaps x0_hat to the level
x_t came from, so the net need not learn the sawtooth that eps would be there (the same idea as the
decoder of Kingma et al. 2021's VDM, used at every step).

    -log P(x) <= KL(q(x_T|x_0) || N(0, I))                                    prior
               + sum_{t=2..T} E_q KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t))     diffusion
               + E_q[-log p(x_0|x_1)]                                          reconstruction

The decoder p(x_0|x_1) is the discretized Gaussian of gaussian.py for discrete data (a Gaussian
density for continuous data).  Its variance is the one the reverse process has at step 1:
fixed_large uses beta_1 (Ho et al.); fixed_small, whose posterior variance is 0 at step 1, uses the
posterior variance of step 2 (the clipped log-variance of Nichol & Dhariwal); learned_range
interpolates between those two in log space.  Every E_q is estimated with one draw of x_t per term.
The net sees x_t and t = i / T and knows nothing else.  Config and registration: config.py.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import UserError
from ...prob.bound import Bound
from ...prob.units import LN2, from_signed, to_signed
from .. import work
from ..base import GenerativeModel
from .gaussian import discretized_gaussian_log_likelihood, gaussian_log_density, normal_kl
from .ode import Flow, ode_bound
from .schedule import Schedule, ScheduleName
from .timesteps import TimestepSampler, TimestepSampling
from .vlb import diffusion_term, planned_rows

Parameterization = Literal["eps", "x0", "v", "categorical"]
Variance = Literal["fixed_small", "fixed_large", "learned_range"]
LossName = Literal["simple", "vlb", "hybrid"]
Rows = Literal["mixed", "kl", "decoder"]


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise UserError(f"Unknown {what} {value!r}; choose one of: {', '.join(allowed)}.")
    return value


class Diffusion(GenerativeModel):
    """Discrete-time diffusion over data of `shape` (levels K, or None for continuous data).

    net(x_t [B, *shape], t [B]) -> [B, net_channels(C, K, parameterization, variance), *shape[1:]]:
    the mean's part (C channels of eps, x0 or v; or K * C level-major logits for categorical), then for
    learned_range C channels of the interpolation weights v in [-1, 1] of Nichol & Dhariwal.
    chunk: the most (example, step) rows one net call sees while evaluating a bound.
    """

    family = "diffusion"
    estimators = ("full", "mc", "is", "ode")
    # T net calls an example for the full sum; is-32 varies less than mc-32 at about its cost (benchmarks/)
    validation_estimator = ("is", 32)
    iterative_sampler = True

    def __init__(self, net: nn.Module, *, levels: int | None, shape: tuple[int, ...], timesteps: int = 1000,
                 schedule: ScheduleName | Schedule = "linear", parameterization: Parameterization = "eps",
                 variance: Variance = "fixed_large", loss: LossName = "simple",
                 timestep_sampling: TimestepSampling = "uniform", hybrid_weight: float = 1e-3,
                 clip_x0: bool = False, chunk: int = 4096, config=None):
        super().__init__(levels=levels, shape=shape, config=config)
        self.parameterization = _choice(parameterization, ("eps", "x0", "v", "categorical"),
                                        "parameterization")
        if self.parameterization == "categorical" and levels is None:
            raise UserError("parameterization categorical needs discrete data (levels); use eps, x0 or v.")
        self.variance = _choice(variance, ("fixed_small", "fixed_large", "learned_range"), "variance")
        self.loss_name = _choice(loss, ("simple", "vlb", "hybrid"), "loss")
        _choice(timestep_sampling, ("uniform", "importance"), "timestep sampling")
        if self.variance == "learned_range" and self.loss_name == "simple":
            raise UserError("variance learned_range is trained by the bound; use loss hybrid or vlb.")
        if self.loss_name == "hybrid" and self.variance != "learned_range":
            raise UserError("loss hybrid only adds a bound term for learned variances; "
                            "use variance learned_range, or loss simple.")
        if timestep_sampling == "importance" and self.loss_name == "simple":
            raise UserError("timestep sampling importance weights the bound's terms; use loss vlb or hybrid.")
        if clip_x0 and levels is None:
            raise UserError("clip_x0 clips to the [-1, 1] range of discrete data; continuous data have none.")
        if chunk < 1:
            raise UserError(f"chunk must be a positive number of rows, got {chunk}.")
        self.net = net
        # a Schedule instance (any betas, e.g. a model trained elsewhere: adapters/) sets T itself
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule.make(schedule, timesteps)
        self.timesteps = self.schedule.timesteps
        self.sampler = TimestepSampler(self.timesteps, timestep_sampling)
        self.hybrid_weight, self.clip_x0, self.chunk = float(hybrid_weight), bool(clip_x0), int(chunk)
        self._log_small, self._log_large = self.schedule.log_variance_range()

    # ------------------------------------------------------------------ the reverse process
    def _c(self, name: str, i: Tensor, ndim: int) -> Tensor:
        return self.schedule.at(name, i, ndim)

    def signed(self, x: Tensor) -> Tensor:
        """Data -> the float scale the chain runs on ([-1, 1] for discrete levels), [B, *shape]."""
        if self.levels is None:
            return x.to(torch.get_default_dtype())
        return to_signed(x, self.levels)

    def q_sample(self, y0: Tensor, i: Tensor, noise: Tensor) -> Tensor:
        """x_i = sqrt(abar_i) y0 + sqrt(1 - abar_i) noise, in y0's dtype."""
        abar = self._c("alpha_bar", i, y0.dim())
        return (abar.sqrt() * y0 + (1 - abar).sqrt() * noise).to(y0.dtype)

    @staticmethod
    def net_channels(channels: int, levels: int | None, parameterization: str, variance: str) -> int:
        """Output channels the net needs for inputs of `channels` channels: the mean's (K per channel
        for categorical) plus one per channel for learned_range's interpolation weights."""
        mean = channels * (levels if parameterization == "categorical" else 1)
        return mean + (channels if variance == "learned_range" else 0)

    def _net(self, x_t: Tensor, i: Tensor) -> tuple[Tensor, Tensor | None]:
        return self._net_at(x_t, i.to(x_t.dtype) / self.timesteps)

    def _net_at(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """The net at times t [B] (t = i / T at step i; the ODE asks between the steps)."""
        out = self.net(x_t, t)
        c = x_t.shape[1]
        need = self.net_channels(c, self.levels, self.parameterization, self.variance)
        if out.shape != (x_t.shape[0], need, *x_t.shape[2:]):
            raise ValueError(f"the net returned shape {tuple(out.shape)}; {self.parameterization} with "
                             f"{self.variance} needs [B, {need}, ...]")
        if self.variance == "learned_range":
            mean, var = out.split([need - c, c], dim=1)
            return mean, var
        return out, None

    def _log_posterior(self, x_t: Tensor, abar: Tensor, logits: Tensor) -> Tensor:
        """categorical: log p(x_0 = level k | x_t) [B, K, *shape] float64, net logits + log q(x_t | k);
        abar [B, 1, ...] (x_t's dims) float64."""
        return torch.log_softmax(self._posterior_logits(x_t, abar, logits), dim=1)

    def _posterior_logits(self, x_t: Tensor, abar: Tensor, logits: Tensor) -> Tensor:
        """[B, K, *shape] float64: net logits + log q(x_t | k) up to a constant in k.  Of the Gaussian
        exponent -(x_t - sqrt(abar) c_k)^2 / (2 (1 - abar)) only the terms in c_k are kept: the x_t^2
        term is the same for every level and cancels in the softmax, and dropping it saves work and
        the cancellation of two large numbers at low noise."""
        xt = x_t.double()[:, None]
        logits = logits.reshape(x_t.shape[0], self.levels, *x_t.shape[1:])  # float64 by promotion below
        abar = abar[:, None]
        centres = torch.linspace(-1.0, 1.0, self.levels, dtype=torch.float64, device=xt.device)
        centres = centres.reshape(1, -1, *([1] * (xt.dim() - 2)))
        inv = 1.0 / (1 - abar)
        return logits + centres * (xt * (abar.sqrt() * inv)) - centres.square() * (0.5 * abar * inv)

    def _x0_eps(self, x_t: Tensor, abar: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
        """The net's output read as (x0_hat, eps_hat), float64, per the parameterization, at noise
        level abar [B, 1, ...] (x_t's dims) float64."""
        xt = x_t.double()
        o = out if self.parameterization == "categorical" else out.double()  # logits: promoted where used
        sa, s1 = abar.sqrt(), (1 - abar).sqrt()
        if self.parameterization == "categorical":
            centres = torch.linspace(-1.0, 1.0, self.levels, dtype=torch.float64, device=xt.device)
            post = torch.softmax(self._posterior_logits(x_t, abar, out), dim=1)
            x0 = (post * centres.reshape(1, -1, *([1] * (xt.dim() - 1)))).sum(1)
            eps = (xt - sa * x0) / s1
        elif self.parameterization == "eps":
            x0, eps = (xt - s1 * o) / sa, o
        elif self.parameterization == "x0":
            x0, eps = o, (xt - sa * o) / s1
        else:  # v = sqrt(abar) eps - sqrt(1 - abar) x0
            x0, eps = sa * xt - s1 * o, s1 * xt + sa * o
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (xt - sa * x0) / s1
        return x0, eps

    def _logvar(self, i: Tensor, out_var: Tensor | None, ndim: int) -> Tensor:
        """log variance of p(x_{i-1} | x_i), float64, [B, 1, ...] (fixed) or [B, *shape] (learned)."""
        small = self._log_small.to(i.device)[i].reshape(-1, *([1] * (ndim - 1)))
        large = self._log_large.to(i.device)[i].reshape(-1, *([1] * (ndim - 1)))
        if self.variance == "fixed_small":
            return small
        if self.variance == "fixed_large":
            return large
        frac = (out_var.double() + 1) / 2
        return frac * large + (1 - frac) * small

    def predict(self, x_t: Tensor, i: Tensor) -> dict[str, Tensor]:
        """One net call at steps i [B] (long, 1..T): float64 x0, eps, and the reverse step's mean and
        logvar (p(x_{i-1} | x_i) for i >= 2, the decoder's Gaussian for i = 1), each [B, *shape]."""
        out, out_var = self._net(x_t, i)
        return self._reverse(x_t, i, out, out_var)

    def _reverse(self, x_t: Tensor, i: Tensor, out: Tensor, out_var: Tensor | None) -> dict[str, Tensor]:
        nd = x_t.dim()
        x0, eps = self._x0_eps(x_t, self._c("alpha_bar", i, nd), out)
        mean = self._c("posterior_coef_x0", i, nd) * x0 + self._c("posterior_coef_xt", i, nd) * x_t
        logvar = self._logvar(i, out_var, x_t.dim()).expand_as(mean)
        return {"x0": x0, "eps": eps, "mean": mean, "logvar": logvar}

    def reverse_step(self, x_t: Tensor, i: int, generator: torch.Generator | None = None) -> Tensor:
        """x_{i-1} ~ p(x_{i-1} | x_i) for one integer step i >= 2; [B, *shape] in x_t's dtype."""
        steps = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
        p = self.predict(x_t, steps)
        z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=torch.float64)
        return (p["mean"] + torch.exp(0.5 * p["logvar"]) * z).to(x_t.dtype)

    def decode(self, x_1: Tensor) -> Tensor:
        """The decoder's most likely value given x_1: levels [B, *shape] (long), the nearest level to
        its mean (equal-width bins: the bin holding the mean has the most mass), or the mean itself
        for continuous data."""
        steps = torch.ones(x_1.shape[0], dtype=torch.long, device=x_1.device)
        mean = self.predict(x_1, steps)["mean"]
        if self.levels is None:
            return mean.to(x_1.dtype)
        return from_signed(mean, self.levels)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, progress: bool = False) -> Tensor:
        """Ancestral sampling, all T steps (Ho et al. 2020, algorithm 2: T net calls), in one batch
        (sample.ancestral batches it; a tqdm bar over the steps if progress).  Levels [n, *shape]
        (long), or floats for continuous data.  Runs in eval mode (dropout off) and restores the
        training flag afterwards."""
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        try:
            x = torch.randn((n, *self.shape), generator=generator, device=self.device)
            steps = range(self.timesteps, 1, -1)
            for i in tqdm(steps, desc="ddpm sample", disable=not progress, leave=False):
                x = self.reverse_step(x, i, generator)
                work.advance(1)  # one net call, for sample.batches' bar (models/work.py)
            out = self.decode(x)
            work.advance(1)
            return out
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ the terms of the bound
    def _terms(self, y0: Tensor, x: Tensor, i: Tensor, noise: Tensor, freeze_mean: bool = False,
               rows: Rows = "mixed") -> tuple[Tensor, Tensor | None]:
        """One net call: (L_i [N] nats float64, mse [N] of the parameterization's own target; for
        categorical, the cross-entropy of the true level in nats per dimension).

        L_i is KL(q(x_{i-1}|x_i, x_0) || p(x_{i-1}|x_i)) for i >= 2 and -log p(x_0|x_1) for i = 1, each
        summed over dimensions.  freeze_mean stops L_i's gradient to the mean (the hybrid loss).
        rows: "mixed" (training: any steps; both L_i forms are computed and the mse is returned),
        "kl" (every i >= 2) or "decoder" (every i = 1): a bound's rows, where only the L_i form its
        steps use is computed and the mse (None) is not: most of the cost of scoring is float64
        arithmetic on [N, K, D] tensors, not the net."""
        x_t = self.q_sample(y0, i, noise)
        out, out_var = self._net(x_t, i)
        p = self._reverse(x_t, i, out.detach() if freeze_mean else out, out_var)
        loss_i = self._kl_rows(y0, x_t, i, p) if rows != "decoder" else None
        if rows != "kl":
            nll = self._decoder_rows(y0, x, p)
            loss_i = nll if loss_i is None else torch.where(i == 1, nll, loss_i)
        if rows != "mixed":
            return loss_i, None
        nd = y0.dim()
        if self.parameterization == "categorical":  # cross-entropy of the true level, nats per dim
            log_post = self._log_posterior(x_t, self._c("alpha_bar", i, nd), out)
            return loss_i, -log_post.gather(1, x[:, None].long()).flatten(1).mean(1)
        abar = self._c("alpha_bar", i, nd)
        target = {"eps": noise, "x0": y0,
                  "v": abar.sqrt() * noise - (1 - abar).sqrt() * y0}[self.parameterization]
        mse = (out.double() - target.double()).pow(2).flatten(1).mean(1)
        return loss_i, mse

    def _kl_rows(self, y0: Tensor, x_t: Tensor, i: Tensor, p: dict[str, Tensor]) -> Tensor:
        """KL(q(x_{i-1}|x_i, x_0) || p(x_{i-1}|x_i)) summed over dimensions, [N] nats float64."""
        nd = y0.dim()
        q_mean = self._c("posterior_coef_x0", i, nd) * y0 + self._c("posterior_coef_xt", i, nd) * x_t
        q_logvar = self._log_small.to(i.device)[i].reshape(-1, *([1] * (nd - 1)))  # unused at i = 1
        return normal_kl(q_mean, q_logvar, p["mean"], p["logvar"]).flatten(1).sum(1)

    def _decoder_rows(self, y0: Tensor, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        """-log p(x_0 | x_1) summed over dimensions, [N] nats float64 (p: the reverse step at i = 1)."""
        if self.levels is None:
            nll = -gaussian_log_density(y0, p["mean"], p["logvar"])
        else:
            nll = -discretized_gaussian_log_likelihood(x, p["mean"], 0.5 * p["logvar"], self.levels)
        return nll.flatten(1).sum(1)

    def _chunk_rows(self) -> int:
        """Rows per net call while scoring: at most self.chunk, and few enough that the widest float64
        tensor of a row's terms ([K, D] for categorical, [D] otherwise) stays near 2^20 elements (8 MB),
        which keeps the elementwise work in cache: measured 2-3x faster than 4096 rows on digits."""
        width = self.dims * (self.levels if self.parameterization == "categorical" else 1)
        return max(1, min(self.chunk, (1 << 20) // width))

    def _rows(self, y0: Tensor, x: Tensor, example: Tensor, steps: Tensor,
              generator: torch.Generator | None) -> Tensor:
        """L_i [N] float64 for the (example, step) pairs given as example [N], steps [N], evaluated
        in chunks of at most self.chunk rows so memory stays bounded."""
        first = steps == 1
        rows: Rows = "decoder" if bool(first.all()) else "kl" if not bool(first.any()) else "mixed"
        out, chunk = [], self._chunk_rows()
        for s in range(0, example.numel(), chunk):
            e, i = example[s:s + chunk], steps[s:s + chunk]
            noise = torch.randn((e.numel(), *y0.shape[1:]), generator=generator, device=y0.device,
                                dtype=y0.dtype)
            out.append(self._terms(y0[e], x[e], i, noise, rows=rows)[0])
            work.advance(e.numel())
        return torch.cat(out)

    def prior(self, y0: Tensor) -> Tensor:
        """KL(q(x_T|x_0) || N(0, I)) [B] nats, float64."""
        return self.schedule.prior_kl(y0).flatten(1).sum(1)

    def _check(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise UserError(f"This diffusion model was built for examples of shape {self.shape}, "
                            f"got a batch of shape {tuple(x.shape)}.")
        if self.levels is not None and (x.is_floating_point() or x.min() < 0 or x.max() >= self.levels):
            raise UserError(f"Discrete data must be integer levels 0..{self.levels - 1}.")
        return x.to(self.device)

    def flow(self) -> Flow:
        """The probability-flow ODE of the process whose log-SNR is interpolated linearly in t between
        the steps (Schedule.log_snr), on t in [1/T, 1], with the net asked at continuous t."""
        def eps(z: Tensor, t: Tensor, gamma: Tensor) -> Tensor:
            dtype = next(self.net.parameters()).dtype
            out, _ = self._net_at(z.to(dtype), t.to(dtype))
            abar = torch.sigmoid(-gamma).reshape(-1, *([1] * (z.dim() - 1)))
            return self._x0_eps(z, abar, out)[1]

        return Flow(self.schedule.log_snr, eps, 1.0 / self.timesteps, 1.0)

    def _decoder_nll(self, x: Tensor, x_1: Tensor) -> Tensor:
        """-log p(x | x_1) [B] nats, the bound's decoder at step 1."""
        steps = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        p = self.predict(x_1.to(next(self.net.parameters()).dtype), steps)
        nll = -discretized_gaussian_log_likelihood(x, p["mean"], 0.5 * p["logvar"], self.levels)
        return nll.flatten(1).sum(1)

    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None, options: dict | None = None) -> Bound:
        """Upper bound on -log P(x), [B] nats per term: prior, diffusion, reconstruction.

        estimator "full" (default, all T steps), "mc" (k uniform steps) or "is" (k importance-sampled,
        stratified steps; options {"proposal", "floor"}): the diffusion term by vlb.diffusion_term; the
        prior in closed form; the reconstruction the mean of two draws of x_1.  Bound.variance [B]: the
        variance of the total's estimate due to those draws (the reconstruction's from its two draws plus
        the diffusion estimator's), None where it cannot be estimated (mc/is with k = 1, full with T = 2).
        estimator "ode": the probability-flow likelihood of flow() (ode.py: terms prior, divergence,
        dequantization; samples = Hutchinson probes; options = ode.ODEOptions as a dict)."""
        estimator = _choice(estimator or "full", self.estimators, "estimator")
        x = self._check(x)
        if estimator == "ode":
            return ode_bound(self.flow(), self.signed(x), levels=self.levels, probes=samples, options=options,
                             generator=generator, decoder=lambda z: self._decoder_nll(x, z))
        if options and estimator != "is":
            raise UserError(f"The {estimator} estimator takes no options; only ode and is do.")
        y0, b = self.signed(x), x.shape[0]
        work.plan(2 * b + planned_rows(self, b, estimator, samples, options or {}))
        pair = self._rows(y0, x, torch.arange(b, device=y0.device).repeat(2),
                          torch.ones(2 * b, dtype=torch.long, device=y0.device), generator).reshape(2, b)
        recon = pair.mean(0)
        recon_var = (pair.detach()[0] - pair.detach()[1]).pow(2) / 4  # the variance of a mean of 2 draws
        diff, variance, name = diffusion_term(self, y0, x, estimator, samples, options or {}, generator)
        variance = None if variance is None else variance + recon_var
        terms = {"prior": self.prior(y0), "diffusion": diff, "reconstruction": recon}
        return Bound(terms, name, exact=False, dims=self.dims, variance=variance)

    # ------------------------------------------------------------------ the training objective
    def loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> Bound:
        """Training objective per example, one step per example drawn by the timestep sampler.

        simple: mse of the parameterization's own target (eps, x0 or v; categorical: cross-entropy of
        the true level), estimator "l_simple".
        vlb: the unbiased one-step estimate of the bound, L_t / p_t, estimator "vlb-mc-k=1".
        hybrid: mse + hybrid_weight * T * L_t in bits/dim with the mean frozen in L_t (so the bound
        trains only the variance), both weighted by 1 / (T p_t), estimator "hybrid"."""
        x = self._check(x)
        y0, T = self.signed(x), self.timesteps
        i, p_i = self.sampler.sample(x.shape[0], generator=generator, device=y0.device)
        noise = torch.randn(y0.shape, generator=generator, device=y0.device, dtype=y0.dtype)
        if self.loss_name == "simple":
            _, mse = self._terms(y0, x, i, noise)
            return Bound({"mse": mse}, "l_simple", dims=self.dims)
        loss_i, mse = self._terms(y0, x, i, noise, freeze_mean=self.loss_name == "hybrid")
        self.sampler.update(i, loss_i)
        weight = 1.0 / (T * p_i)
        if self.loss_name == "hybrid":
            vb = self.hybrid_weight * T * loss_i / (self.dims * LN2)
            return Bound({"mse": weight * mse, "vlb": weight * vb}, "hybrid", dims=self.dims)
        est = T * weight * loss_i
        zero = torch.zeros_like(est)
        terms = {"prior": self.prior(y0), "diffusion": torch.where(i >= 2, est, zero),
                 "reconstruction": torch.where(i == 1, est, zero)}
        return Bound(terms, "vlb-mc-k=1", dims=self.dims)

    def extra_repr(self) -> str:
        return (f"T={self.timesteps}, schedule={self.schedule.name}, "
                f"parameterization={self.parameterization}, variance={self.variance}, "
                f"loss={self.loss_name}, sampling={self.sampler.mode}")
