"""VDM: a continuous-time diffusion model trained on its ELBO (Kingma et al. 2021, "Variational
Diffusion Models", arXiv:2107.00630).

Forward process q(z_t | x) = N(alpha_t y, sigma_t^2 I), variance preserving, with
sigma_t^2 = sigmoid(gamma(t)) and SNR(t) = exp(-gamma(t)); gamma is a learned monotone schedule
(nets/monotone.py).  The bound on -log P(x), in nats per example, has three terms (paper eq. 11):

    prior          KL(q(z_1 | x) || N(0, I)), closed form
    diffusion      0.5 E_{t ~ U(0,1), eps}[gamma'(t) ||eps - eps_hat(z_t; t)||^2]  (eq. 17)
    reconstruction E_{z_0}[-log p(x | z_0)]

Discrete data (levels K): y = 2x/(K-1) - 1 and p(x | z_0) is categorical over the K levels with
logits -(z_0/alpha_0 - y_k)^2 / (2 exp(gamma_0)) (the Gaussian likelihood around each level,
normalized over the levels; paper App. C), so the bound is on the discrete -log P(x) directly.
Continuous data (levels=None): y = x / scale and p(x | z_0) is the Gaussian density
N(y; z_0/alpha_0, exp(gamma_0)), whose expectation is closed form; the bound is on -log p(x) in
nats, with D log(scale) for the change of variables folded into the reconstruction term.

The noise net sees z_t (plus optional Fourier features, paper sec. 3.4) and the normalized
gamma(t) - not t - so the expected diffusion loss does not depend on the schedule's interior
(paper sec. 5.1).  Training therefore uses the interior's gradient to minimize the estimator's
variance instead (sec. 5.3): the gradient reaching the interior is d/d(eta) of E[L^2], taken
cheaply by multiplying the gradient flowing into the normalized schedule by L_i / mean(L) (the
gradient of mean(L^2) / (2 mean L): same direction, same scale as an ELBO gradient, so global
gradient clipping is not dominated by it).  The endpoints gamma_0, gamma_1 get the ELBO gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import UserError
from ...nets.monotone import MonotoneSchedule
from ...nets.time_mlp import TimeMLP
from ...prob.bound import Bound
from ...prob.units import from_signed, to_signed
from .. import work
from ..base import GenerativeModel
from ..registry import register
from .importance import lattice_times
from .ode import Flow, ode_bound
from .options import UNetOptions, unet_from_options

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class VDMConfig:
    """gamma_min/gamma_max: gamma(0), gamma(1) at the start (learned further if learn_endpoints);
    they also fix the normalization of the net's time input.  gamma_min None: the paper's -13.3 for
    256 levels, moved by 2 log(255 / (K - 1)) so that the decoder's noise stays a third of half a
    bin (-7.76 for K = 17); -13.3 for continuous data.  fourier: exponents n of the extra input
    features sin(2^n 2pi z), cos(2^n 2pi z); None: (n0, n0 + 1) with 2^n0 ~ (K - 1) / 2, so the
    first feature's period is one bin (the paper's 7, 8 for K = 256), none for continuous data.
    parameterization: what the net predicts, "eps" (the paper's) or "x" (eps_hat = (z - alpha
    x_hat) / sigma: with Fourier features, denoising at high SNR is then nearly linear in the
    features and needs no 1/sigma gain).  bound_samples: default k of bound().
    sample_steps: T of the ancestral sampler.  net "auto": the UNet for images [C, H, W] (on digits
    it reaches 1.91 bits/dim where the MLP stalls at 2.40), the TimeMLP otherwise.
    width/depth/emb_dim/dropout: the TimeMLP (net "mlp"); unet: the UNet's sizes (net "unet",
    options.UNetOptions, e.g. --set model.unet.channels=64).  The default, 48 channels with dropout
    0.1, was chosen on digits' validation bound for a 5-minute budget: at 2600 steps it reaches 1.683
    bits/dim where 32 channels reach 1.739 (dropout 0.1) or 1.708 by step 3400 (dropout 0.2), at
    0.64x their examples/s (benchmarks/results/digits_net_shape_vdm*.json, diffusion_budget.json).  The family
    trains at precision "auto" (bf16 where the hardware has it: the same bits/dim after 3000 steps,
    1.20x the examples/s).
    scale: continuous data only, y = x / scale."""

    gamma_min: float | None = None
    gamma_max: float = 5.0
    schedule: Literal["learned", "linear"] = "learned"
    learn_endpoints: bool = True
    schedule_hidden: int = 1024
    fourier: tuple[int, ...] | None = None
    net: Literal["auto", "mlp", "unet"] = "auto"
    parameterization: Literal["eps", "x"] = "eps"
    width: int = 512
    unet: UNetOptions = field(default_factory=lambda: UNetOptions(channels=48, dropout=0.1))
    depth: int = 3
    emb_dim: int = 64
    dropout: float = 0.0
    bound_samples: int = 4
    sample_steps: int = 1000
    schedule_lr_scale: float = 10.0  # the schedule's few scalars take a larger step (see param_groups)
    antithetic: bool = True
    scale: float = 1.0

    def resolved(self, levels: int | None) -> VDMConfig:
        """The same config with the automatic choices (None) made for data with `levels`."""
        gamma_min, fourier = self.gamma_min, self.fourier
        if gamma_min is None:
            gamma_min = -13.3 if levels is None else -13.3 + 2.0 * math.log(255.0 / (levels - 1))
        if fourier is None:
            n0 = round(math.log2((levels - 1) / 2.0)) if levels is not None else None
            fourier = () if n0 is None else (n0, n0 + 1)
        return replace(self, gamma_min=round(gamma_min, 4), fourier=tuple(fourier))

    def __post_init__(self) -> None:
        if self.gamma_min is not None and not self.gamma_min < self.gamma_max:
            raise UserError(f"vdm.gamma_min ({self.gamma_min}) must be below vdm.gamma_max "
                            f"({self.gamma_max}).")
        for name in ("width", "bound_samples", "sample_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"vdm.{name} must be at least 1, got {getattr(self, name)}.")
        if not self.scale > 0:
            raise UserError(f"vdm.scale must be positive, got {self.scale}.")
        if not self.schedule_lr_scale > 0:
            raise UserError(f"vdm.schedule_lr_scale must be positive, got {self.schedule_lr_scale}.")


class _Flat(nn.Module):
    """Adapts a vector net to the data layout: [B, C', *rest] -> flatten -> net -> [B, *out]."""

    def __init__(self, inner: nn.Module, out_shape: tuple[int, ...]):
        super().__init__()
        self.inner, self.out_shape = inner, out_shape

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return self.inner(z.flatten(1), t).view(z.shape[0], *self.out_shape)


class VDM(GenerativeModel):
    """Continuous-time VDM.  net(z [B, *in_shape], t [B]) -> eps_hat [B, *shape] may be given
    (in_shape has (1 + 2 len(fourier)) times the channels); t is (gamma - gamma_min) /
    (gamma_max - gamma_min), the normalized log inverse SNR."""

    family = "vdm"
    estimators = ("mc", "lds", "ode")
    tight_estimator = ("mc", 64)  # more draws of t: same expectation, smaller Monte Carlo error
    # the loop selects weights by this: lattice draws of t (importance.lattice_times), a lower
    # variance than mc-4 at 4x the net calls, so early stopping follows the model and not the draws
    validation_estimator = ("lds", 16)
    iterative_sampler = True
    BOUND_CHUNK = 1024  # rows (draws x examples) per net call of bound()

    def __init__(self, config: VDMConfig | None = None, *, levels: int | None,
                 shape: tuple[int, ...], net: nn.Module | None = None):
        config = (config or VDMConfig()).resolved(levels)
        super().__init__(levels=levels, shape=shape, config=config)
        self.schedule = MonotoneSchedule(config.gamma_min, config.gamma_max, kind=config.schedule,
                                         learn_endpoints=config.learn_endpoints,
                                         hidden=config.schedule_hidden)
        self.freqs = [2.0 * math.pi * 2.0 ** n for n in config.fourier]  # angular, per unit of z
        self.net = net if net is not None else self._build_net(config)
        if levels is not None:
            self.register_buffer("centres", to_signed(torch.arange(levels), levels),
                                 persistent=False)

    def _build_net(self, c: VDMConfig) -> nn.Module:
        width = 1 + 2 * len(c.fourier)
        kind = c.net if c.net != "auto" else ("unet" if len(self.shape) == 3 else "mlp")
        if kind == "unet":
            if len(self.shape) != 3:
                raise UserError(f"vdm.net 'unet' needs image data [C, H, W], got shape {self.shape}.")
            return unet_from_options(c.unet, self.shape[0] * width, self.shape[0], self.shape[1])
        inner = TimeMLP(self.dims * width, self.dims, width=c.width, depth=c.depth,
                        emb_dim=c.emb_dim, dropout=c.dropout)
        return _Flat(inner, self.shape)

    # ---- pieces of the bound ------------------------------------------------------------------

    @property
    def _dtype(self) -> torch.dtype:
        return self.schedule.gamma_0_param.dtype

    def _encode(self, x: Tensor) -> Tensor:
        """Data layout -> y [B, *shape] floats on the model's scale; bad input -> UserError."""
        if tuple(x.shape[1:]) != self.shape or x.dim() != len(self.shape) + 1:
            raise UserError(f"VDM expects a batch of shape [B, {', '.join(map(str, self.shape))}], "
                            f"got {tuple(x.shape)}.")
        if self.levels is None:
            if not x.is_floating_point():
                raise UserError("VDM for continuous data expects floating-point x.")
            return x.to(self._dtype) / self.config.scale
        if x.is_floating_point() or x.min() < 0 or x.max() >= self.levels:
            raise UserError(f"VDM for discrete data expects integer levels 0..{self.levels - 1}.")
        return to_signed(x, self.levels).to(self._dtype)

    def _eps_hat(self, z: Tensor, gamma: Tensor) -> Tensor:
        """z [B, *shape], gamma [B] -> eps_hat [B, *shape]."""
        c = self.config
        t_in = (gamma - c.gamma_min) / (c.gamma_max - c.gamma_min)
        h = z
        if len(self.freqs):
            freqs = torch.tensor(self.freqs, dtype=z.dtype, device=z.device)
            ang = z.unsqueeze(2) * freqs.view(1, 1, -1, *[1] * (z.dim() - 2))
            feats = torch.cat([torch.sin(ang), torch.cos(ang)], 2).flatten(1, 2)
            h = torch.cat([z, feats], 1)
        out = self.net(h, t_in)
        if c.parameterization == "eps":
            return out
        view = (-1,) + (1,) * (z.dim() - 1)
        alpha, sigma = torch.sigmoid(-gamma).sqrt().view(view), torch.sigmoid(gamma).sqrt().view(view)
        return (z - alpha * out) / sigma

    def _prior(self, y: Tensor) -> Tensor:
        """KL(N(alpha_1 y, sigma_1^2) || N(0, 1)) summed over dims, [B] nats."""
        _, g1 = self.schedule.endpoints()
        a2 = torch.sigmoid(-g1)
        sq = y.flatten(1).pow(2)
        return 0.5 * (a2 * (sq - 1.0) + F.softplus(-g1)).sum(1)

    def _diffusion(self, y: Tensor, t: Tensor, generator, eps: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """y [B, *shape], t [B] -> (L_diff [B] nats, s [B], ds/dt [B]) with s the normalized
        schedule (returned so that training can reroute its gradient); eps [B, *shape] drawn here
        unless given."""
        g0, g1 = self.schedule.endpoints()
        s, ds = self.schedule.normalized(t)
        gamma, dgamma = g0 + (g1 - g0) * s, (g1 - g0) * ds
        if eps is None:
            eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        view = (-1,) + (1,) * (y.dim() - 1)
        alpha = torch.sigmoid(-gamma).sqrt().view(view)
        sigma = torch.sigmoid(gamma).sqrt().view(view)
        eps_hat = self._eps_hat(alpha * y + sigma * eps, gamma)
        mse = (eps - eps_hat).flatten(1).pow(2).sum(1)
        return 0.5 * dgamma * mse, s, ds

    def _decoder_logits(self, z_rescaled: Tensor, g0: Tensor) -> Tensor:
        """z_0 / alpha_0 [B, *shape] -> log p(level k | z_0) [B, *shape, K], normalized over k."""
        logits = -0.5 * (z_rescaled.unsqueeze(-1) - self.centres.to(z_rescaled.dtype)) ** 2
        return torch.log_softmax(logits * torch.exp(-g0), -1)

    def _reconstruction(self, x: Tensor, y: Tensor, generator) -> Tensor:
        """E_{z_0}[-log p(x | z_0)] per example [B] nats: one draw of z_0 (discrete) or the closed
        form (continuous, Gaussian decoder; includes D log(scale))."""
        g0, _ = self.schedule.endpoints()
        if self.levels is None:
            const = 0.5 * self.dims * (_LOG_2PI + 1.0) + self.dims * math.log(self.config.scale)
            return (0.5 * self.dims * g0 + const).expand(y.shape[0])
        eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        z_rescaled = y + torch.exp(0.5 * g0) * eps  # z_0 / alpha_0
        logp = self._decoder_logits(z_rescaled, g0).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
        return -logp.flatten(1).sum(1)

    # ---- the contract -------------------------------------------------------------------------

    def param_groups(self) -> list[dict]:
        """The noise schedule (a few scalars whose endpoints start far from where the bound wants
        them) gets schedule_lr_scale times the run's learning rate, without weight decay; the
        benchmarks measured 1e-2 against 1e-3 for the net."""
        sched = {id(p) for p in self.schedule.parameters()}
        return [{"params": [p for p in self.parameters() if id(p) not in sched]},
                {"params": list(self.schedule.parameters()), "lr_scale": self.config.schedule_lr_scale,
                 "weight_decay": 0.0}]

    def loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> Bound:
        """The ELBO with one t per example, t low-discrepancy over the batch (paper App. I.1);
        the schedule's interior receives the variance-minimizing gradient (module docstring)."""
        y = self._encode(x)
        b = y.shape[0]
        u = torch.rand((1 if self.config.antithetic else b,), generator=generator,
                       dtype=y.dtype, device=y.device)
        t = torch.remainder(u + torch.arange(b, dtype=y.dtype, device=y.device) / b, 1.0) \
            if self.config.antithetic else u
        diff, s, ds = self._diffusion(y, t, generator)
        if self.config.schedule == "learned" and diff.requires_grad and s.requires_grad:
            w = diff.detach() / diff.detach().mean().clamp_min(1e-12)
            s.register_hook(lambda g: g * w)
            ds.register_hook(lambda g: g * w)
        terms = {"prior": self._prior(y), "diffusion": diff,
                 "reconstruction": self._reconstruction(x, y, generator)}
        return Bound(terms, "vdm-mc-k=1", exact=False, dims=self.dims)

    def flow(self) -> Flow:
        """The probability-flow ODE of this model's process on t in [0, 1] (ode.py)."""
        def gamma(t: Tensor) -> tuple[Tensor, Tensor]:
            g, dg = self.schedule(t.to(self._dtype))
            return g.double(), dg.double()

        def eps(z: Tensor, t: Tensor, g: Tensor) -> Tensor:
            return self._eps_hat(z.to(self._dtype), g.to(self._dtype)).double()

        return Flow(gamma, eps, 0.0, 1.0)

    def _decoder_nll(self, x: Tensor, z0: Tensor) -> Tensor:
        """-log p(x | z_0) [B] nats, the categorical decoder."""
        g0, _ = self.schedule.endpoints()
        z_rescaled = z0.to(self._dtype) / torch.sigmoid(-g0).sqrt()
        logp = self._decoder_logits(z_rescaled, g0).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
        return -logp.flatten(1).sum(1)

    def _ode(self, x: Tensor, samples: int | None, generator, options: dict | None) -> Bound:
        """estimator "ode" (ode.py); continuous data add D log(scale) as the term `scale`."""
        b = ode_bound(self.flow(), self._encode(x), levels=self.levels, probes=samples, options=options,
                      generator=generator, decoder=lambda z: self._decoder_nll(x, z))
        if self.levels is None and self.config.scale != 1.0:
            b.terms["scale"] = torch.full_like(b.terms["prior"], self.dims * math.log(self.config.scale))
        return b

    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None, options: dict | None = None) -> Bound:
        """Upper bound on -log P(x), [B] nats per term: the diffusion and reconstruction terms
        averaged over k = samples independent draws of (t, eps) (default config.bound_samples);
        Bound.variance is the [B] variance of the total's estimate (sample variance / k; None
        when k = 1).  estimator "lds": t on randomly shifted lattices mod(u + j / m, 1) (paper App. I.1),
        in 2 (k < 8) or 4 independent groups of m = k // groups, variance from the spread of the group
        means (importance.lattice_times).  estimator "ode": the probability-flow likelihood (ode.py; samples =
        Hutchinson probes, options = ode.ODEOptions as a dict)."""
        if estimator == "ode":
            return self._ode(x, samples, generator, options)
        if estimator not in (None, "mc", "lds"):
            raise UserError(f"VDM's bound has the estimators 'mc', 'lds' and 'ode'; got {estimator!r}.")
        if options:
            raise UserError(f"VDM's {estimator or 'mc'} estimator takes no options; only ode does.")
        k = samples if samples is not None else self.config.bound_samples
        lds = estimator == "lds"
        if k < (2 if lds else 1):
            raise UserError(f"bound samples must be at least {2 if lds else 1}, got {k}.")
        groups = (4 if k >= 8 else 2) if lds else k  # lds: independent replicates of a lattice of k / groups
        k -= k % groups
        y = self._encode(x)
        b = y.shape[0]
        yk = y.repeat(k, *[1] * (y.dim() - 1))
        xk = x.repeat(k, *[1] * (x.dim() - 1))
        t = (lattice_times(groups, k // groups, b, generator, dtype=y.dtype, device=y.device).flatten() if lds
             else torch.rand((k * b,), generator=generator, dtype=y.dtype, device=y.device))
        diff = self._chunked_diffusion(yk, t, generator).view(k, b)
        recon = self._reconstruction(xk, yk, generator).view(k, b)
        prior = self._prior(y)
        means = (diff + recon).view(groups, k // groups, b).mean(1)  # independent replicates
        variance = means.var(0) / groups if groups > 1 else None
        terms = {"prior": prior, "diffusion": diff.mean(0), "reconstruction": recon.mean(0)}
        return Bound(terms, f"vdm-{estimator or 'mc'}-k={k}", exact=False, dims=self.dims, variance=variance)

    def _chunked_diffusion(self, y: Tensor, t: Tensor, generator) -> Tensor:
        """L_diff [N] of _diffusion for N = k B rows, the net asked BOUND_CHUNK rows at a time (memory
        stays bounded, and the progress bar moves: models/work.py); the draws are those of one call."""
        eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        work.plan(y.shape[0])
        parts = []
        for lo in range(0, y.shape[0], self.BOUND_CHUNK):
            hi = lo + self.BOUND_CHUNK
            parts.append(self._diffusion(y[lo:hi], t[lo:hi], None, eps[lo:hi])[0])
            work.advance(parts[-1].shape[0])
        return torch.cat(parts)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, steps: int | None = None,
               progress: bool = False) -> Tensor:
        """Ancestral sampling on the grid t_i = i/T (T = steps or config.sample_steps, default
        1000; T net calls), p(z_s | z_t) = q(z_s | z_t, x = x_hat(z_t)) (paper App. A.4), then the
        decoder's most likely level (discrete) or its mean (continuous).  Returns [n, *shape]; in one
        batch (sample.ancestral batches it, under autocast if asked)."""
        from tqdm.auto import tqdm

        steps = steps or self.config.sample_steps
        dtype, device = self._dtype, self.device
        with torch.autocast(device.type, enabled=False):  # under autocast only the net runs in 16 bits
            gammas, _ = self.schedule(torch.linspace(0.0, 1.0, steps + 1, dtype=dtype, device=device))
        z = torch.randn((n, *self.shape), generator=generator, dtype=dtype, device=device)
        for i in tqdm(range(steps, 0, -1), disable=not progress, desc="vdm sample", leave=False):
            g_t, g_s = gammas[i], gammas[i - 1]
            eps_hat = self._eps_hat(z, g_t.expand(n)).to(dtype)  # 16 bits under autocast: the step in 32
            c = -torch.expm1(g_s - g_t)
            a2_s, a2_t = torch.sigmoid(-g_s), torch.sigmoid(-g_t)
            noise = torch.randn(z.shape, generator=generator, dtype=dtype, device=device)
            z = (a2_s / a2_t).sqrt() * (z - torch.sigmoid(g_t).sqrt() * c * eps_hat) \
                + ((1.0 - a2_s) * c).sqrt() * noise
            work.advance(1)  # one net call, for sample.batches' bar (models/work.py)
        y0 = z / torch.sigmoid(-gammas[0]).sqrt()
        if self.levels is None:
            return y0 * self.config.scale
        return from_signed(y0, self.levels)  # argmax of the decoder = the nearest level


@register("vdm", VDMConfig, "continuous-time variational diffusion model with a learned schedule "
          "(Kingma et al. 2021), trained on its ELBO", train_defaults={"precision": "auto"})
def build(config: VDMConfig, levels: int | None, shape: tuple[int, ...]) -> VDM:
    return VDM(config, levels=levels, shape=shape)
