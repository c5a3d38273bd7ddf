"""The probability-flow ODE likelihood of a variance-preserving diffusion, shared by `diffusion` (DDPM)
and `vdm` (Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations", sec. 4.3 and App. D.2; Chen et al. 2018, "Neural Ordinary Differential Equations").

Both families are written in one continuous-time form: z_t = alpha_t y + sigma_t eps on t in [t0, t1],
alpha_t^2 = sigmoid(-gamma(t)), sigma_t^2 = sigmoid(gamma(t)), gamma = -log SNR.  The forward SDE has
beta(t) = d/dt(-log alpha_t^2) = sigma_t^2 gamma'(t), and with the model's score -eps_hat / sigma_t the
probability-flow ODE and its change of log-density are

    dz/dt = 0.5 gamma'(t) (sigma_t eps_hat(z, t) - sigma_t^2 z)  =: f(z, t)
    log p_t0(z_t0) = log N(z_t1; 0, I) + int_t0^t1 tr(df/dz)(z_t, t) dt.

The ODE is a continuous normalizing flow: with the prior N(0, I) at t1 it defines an exact density,
that of the flow (not of the SDE's ancestral sampler, whose likelihood the variational bound bounds).
It is integrated from data (t0) to the prior (t1) by torchdiffeq, the state being z and one running
trace integral per probe.  Terms of the Bound, nats per example, summing to -log p:

    prior       -log N(z_t1; 0, I)
    divergence  -int tr(df/dz) dt: exact (the D vector-Jacobian products with the basis vectors) for
                D <= exact_dims, else Hutchinson's estimator v^T (df/dz) v with k Rademacher probes
                drawn ONCE per solve (Grathwohl et al. 2019, FFJORD); the k integrals are independent
                unbiased estimates, their variance / k goes into Bound.variance.

Discrete data (levels K, y on [-1, 1], bin width w = 2 / (K - 1)) need a density on a continuum:
    uniform     z_t0 = y + u, u ~ U(-w/2, w/2)^D, term dequantization = -D log w, so that
                E_u[bound] >= -log P(x) (design.md; Theis et al. 2016);
    decoder     z_t0 ~ q(z_t0 | x) = N(alpha_t0 y, sigma_t0^2 I) and the family's own decoder P(x | z_t0):
                terms reconstruction = -log P(x | z_t0), dequantization = log q(z_t0 | x); the bound
                E_q[-log P(x | z) + log q(z | x) - log p_ODE(z)] >= -log P(x) of the model
                "z_t0 ~ flow, x ~ decoder" (variational dequantization; Ho et al. 2019, Flow++).
Continuous data start at z_t0 = y.

Every number is refused unless it converged: a failed solve (step-size underflow, too many steps,
non-finite state) raises ODEFailed, and `check` examples per batch are solved again at tolerances
`tighten` times smaller (fixed-step solvers: `tighten` times more steps); when the mean |difference|
exceeds the standard error of the batch's mean bound, ODEFailed too.  The families provide a `Flow`
(vdm.py: the learned gamma; ddpm.py: log-SNR interpolated linearly between the discrete steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..._config import from_dict
from ...errors import UserError
from ...prob.bound import Bound
from .. import work

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "adaptive_heun")
FIXED = ("rk4", "midpoint", "euler")
_LOG_2PI = math.log(2.0 * math.pi)


class ODEFailed(UserError):
    """The solver failed or did not converge: no likelihood is returned."""


@dataclass
class ODEOptions:
    """solver: torchdiffeq method, adaptive (dopri5 ...) with rtol/atol, or fixed-step (rk4, midpoint,
    euler) with `steps` equal steps from t0 to t1.  exact_dims: largest D whose divergence is the exact
    trace.  dequantization: "uniform", "decoder" or "auto" (the default: decoder where the model has
    one, else uniform; module docstring).  On a model trained on discrete data the ODE puts almost no
    mass in most of a bin at t0 (sigma_t0 is tiny), so uniform noise there costs ~20 bits/dim on
    digits where the decoder's q(z_t0 | x) costs ~0: auto makes the plain command useful.
    check: examples per batch re-solved at tolerances / tighten (steps * tighten); 0 switches the check
    off.  max_steps: an adaptive solve taking more steps than this has failed."""

    solver: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    steps: int = 100
    exact_dims: int = 16
    dequantization: str = "auto"
    check: int = 16
    tighten: float = 10.0
    max_steps: int = 20000

    def __post_init__(self) -> None:
        if self.solver not in ADAPTIVE + FIXED:
            raise UserError(f"Unknown ODE solver {self.solver!r}; choose one of: "
                            f"{', '.join(ADAPTIVE + FIXED)}.")
        if not (self.rtol > 0 and self.atol > 0):
            raise UserError(f"ODE tolerances must be positive, got rtol {self.rtol} and atol {self.atol}.")
        if self.dequantization not in ("auto", "uniform", "decoder"):
            raise UserError(f"Unknown dequantization {self.dequantization!r}; "
                            "choose auto, uniform or decoder.")
        if self.steps < 1 or self.check < 0 or self.max_steps < 1 or not self.tighten > 1:
            raise UserError("ODE options need steps >= 1, check >= 0, max_steps >= 1 and tighten > 1.")

    @staticmethod
    def make(options: dict | None) -> ODEOptions:
        return from_dict(ODEOptions, options, where="ode")

    @property
    def adaptive(self) -> bool:
        return self.solver in ADAPTIVE

    @property
    def name(self) -> str:
        """The estimator's name: ode-<solver>-rtol=<r> (adaptive) or ode-<solver>-steps=<n>."""
        if self.adaptive:
            return f"ode-{self.solver}-rtol={self.rtol:g}"
        return f"ode-{self.solver}-steps={self.steps}"

    def tighter(self) -> ODEOptions:
        if self.adaptive:
            return ODEOptions(**{**vars(self), "rtol": self.rtol / self.tighten,
                                 "atol": self.atol / self.tighten})
        return ODEOptions(**{**vars(self), "steps": int(math.ceil(self.steps * self.tighten))})


@dataclass
class Flow:
    """What the ODE needs from a family.  gamma(t [N]) -> (gamma [N], dgamma/dt [N]) float64;
    eps(z [N, *shape] float64, t [N], gamma [N]) -> eps_hat [N, *shape] float64, differentiable in z;
    the ODE runs on t0 < t1 (data at t0, prior at t1)."""

    gamma: Callable[[Tensor], tuple[Tensor, Tensor]]
    eps: Callable[[Tensor, Tensor, Tensor], Tensor]
    t0: float
    t1: float

    def drift(self, z: Tensor, t: Tensor) -> Tensor:
        """f(z, t) = 0.5 gamma'(t) (sigma_t eps_hat - sigma_t^2 z), [N, *shape] float64; t a scalar."""
        tt = t.to(torch.float64).clamp(self.t0, self.t1).reshape(1).expand(z.shape[0])
        gamma, dgamma = self.gamma(tt)
        view = (-1,) + (1,) * (z.dim() - 1)
        sigma2 = torch.sigmoid(gamma).view(view)
        eps = self.eps(z, tt, gamma)
        return 0.5 * dgamma.view(view) * (sigma2.sqrt() * eps - sigma2 * z)

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        """(alpha_t, sigma_t) at one time t."""
        gamma, _ = self.gamma(torch.tensor([float(t)], dtype=torch.float64))
        return math.sqrt(torch.sigmoid(-gamma).item()), math.sqrt(torch.sigmoid(gamma).item())


def rademacher(k: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """k Rademacher probes per example: [k, B, *shape] of +-1, float64."""
    bits = torch.randint(0, 2, (k, *like.shape), generator=generator, device=like.device)
    return bits.to(torch.float64) * 2 - 1


def basis(like: Tensor) -> Tensor:
    """The D basis vectors per example, [D, B, *shape] float64: their v^T J v sum to tr J exactly."""
    b, d = like.shape[0], like[0].numel()
    eye = torch.eye(d, dtype=torch.float64, device=like.device)
    return eye[:, None, :].expand(d, b, d).reshape(d, *like.shape)


def solve(flow: Flow, z0: Tensor, probes: Tensor, options: ODEOptions, *, exact: bool
          ) -> tuple[Tensor, Tensor, int]:
    """Integrate (z, int v^T (df/dz) v dt) from t0 to t1 with the probes FIXED for the whole solve.

    z0 [B, *shape]; probes [P, B, *shape].  Returns (z_t1 [B, *shape] float64, integrals [k, B]
    float64, NFE): k = P for Hutchinson, k = 1 for exact (the P = D basis terms summed).  Progress
    (models/work.py): B examples times the furthest t reached, the NFE total being unknown ahead."""
    from torchdiffeq import odeint

    b, p = z0.shape[0], probes.shape[0]
    flat = probes.reshape(p * b, *z0.shape[1:])
    nfe, reached = [0], [flow.t0]

    def func(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nfe[0] += 1
        with torch.enable_grad():
            zr = state[0].detach().repeat(p, *([1] * (z0.dim() - 1))).requires_grad_(True)
            f = flow.drift(zr, t)
            (vjp,) = torch.autograd.grad(f, zr, flat)
        tr = (vjp * flat).flatten(1).sum(1).view(p, b)
        now = min(float(t), flow.t1)
        if now > reached[0]:  # rejected steps and stage evaluations behind the front count nothing
            work.advance(b * (now - reached[0]))
            reached[0] = now
        return f[:b].detach(), (tr.sum(0, keepdim=True) if exact else tr).detach()

    state0 = (z0.to(torch.float64), torch.zeros(1 if exact else p, b, dtype=torch.float64, device=z0.device))
    times = torch.tensor([flow.t0, flow.t1], dtype=torch.float64, device=z0.device)
    # step_t: the last step ends exactly at t1 (torchdiffeq otherwise steps past it and interpolates
    # back, asking the model at t > t1, outside its schedule)
    adaptive = {"max_num_steps": options.max_steps, "step_t": times[1:]}
    kwargs = ({"rtol": options.rtol, "atol": options.atol, "options": adaptive} if options.adaptive
              else {"options": {"step_size": (flow.t1 - flow.t0) / options.steps}})
    try:
        z, acc = odeint(func, state0, times, method=options.solver, **kwargs)
    except (AssertionError, RuntimeError) as e:  # torchdiffeq: "underflow in dt", "max_num_steps"
        raise ODEFailed(f"The ODE solver {options.solver} failed ({e}); no likelihood is reported.") from None
    work.advance(b * (flow.t1 - reached[0]))  # a solver whose last evaluation is before t1 (euler)
    z1, integral = z[-1], acc[-1]
    if not (torch.isfinite(z1).all() and torch.isfinite(integral).all()):
        raise ODEFailed(f"The ODE solver {options.solver} reached non-finite values; "
                        "no likelihood is reported.")
    return z1, integral, nfe[0]


def flow_terms(flow: Flow, z0: Tensor, probes: Tensor, options: ODEOptions, *, exact: bool
               ) -> tuple[dict[str, Tensor], Tensor | None, int]:
    """-log p_flow(z0) as terms prior and divergence [B] nats, the divergence's variance [B] (None when
    exact or k = 1), and the NFE."""
    z1, integral, nfe = solve(flow, z0, probes, options, exact=exact)
    d = z0[0].numel()
    prior = 0.5 * z1.flatten(1).pow(2).sum(1) + 0.5 * d * _LOG_2PI
    k = integral.shape[0]
    variance = integral.var(0) / k if k > 1 else None
    return {"prior": prior, "divergence": -integral.mean(0)}, variance, nfe


def _start(flow: Flow, y: Tensor, levels: int | None, options: ODEOptions, decoder,
           generator) -> tuple[Tensor, dict[str, Tensor]]:
    """z_t0 [B, *shape] and the dequantization's own terms (module docstring)."""
    b, d = y.shape[0], y[0].numel()
    if levels is None:
        return y.to(torch.float64), {}
    if options.dequantization == "uniform" or decoder is None:  # auto without a decoder: uniform
        if options.dequantization == "decoder":
            raise UserError("This model has no decoder for decoder dequantization; use uniform.")
        w = 2.0 / (levels - 1)
        u = torch.rand(y.shape, generator=generator, dtype=torch.float64, device=y.device) - 0.5
        return y.double() + w * u, {"dequantization": torch.full((b,), -d * math.log(w), dtype=torch.float64,
                                                                 device=y.device)}
    alpha, sigma = flow.alpha_sigma(flow.t0)
    e = torch.randn(y.shape, generator=generator, dtype=torch.float64, device=y.device)
    z0 = alpha * y.double() + sigma * e
    log_q = -0.5 * e.flatten(1).pow(2).sum(1) - d * math.log(sigma) - 0.5 * d * _LOG_2PI
    return z0, {"reconstruction": decoder(z0).double(), "dequantization": log_q}


def ode_bound(flow: Flow, y: Tensor, *, levels: int | None, probes: int | None, options: dict | None,
              generator: torch.Generator | None = None, decoder: Callable[[Tensor], Tensor] | None = None
              ) -> Bound:
    """The probability-flow bound on -log P(x) (exact -log p(y) for continuous data), [B] nats per term.

    y: the data on the model's continuous scale [B, *shape]; levels: K or None; probes: Hutchinson's k
    (default 2; unused when D <= exact_dims); decoder(z_t0) -> -log P(x | z_t0) [B] for decoder
    dequantization.  Extras: nfe (the batch's function evaluations) and check_gap (mean |difference|
    to the tighter solve, nats)."""
    opts = ODEOptions.make(options)
    k = 2 if probes is None else int(probes)
    if k < 1:
        raise UserError(f"The ode estimator needs at least one Hutchinson probe, got {probes}.")
    exact = y[0].numel() <= opts.exact_dims
    work.plan((y.shape[0] + min(opts.check, y.shape[0])) * (flow.t1 - flow.t0))  # the solve, then the check's
    z0, deq = _start(flow, y, levels, opts, decoder, generator)
    vecs = basis(z0) if exact else rademacher(k, z0, generator)  # drawn once, kept for both solves
    terms, variance, nfe = flow_terms(flow, z0, vecs, opts, exact=exact)
    terms.update(deq)
    nats = torch.stack(list(terms.values())).sum(0)
    gap = _check(flow, z0, vecs, opts, exact, terms, nats)
    b = y.shape[0]
    extras = {"nfe": torch.full((b,), float(nfe), dtype=torch.float64, device=y.device),
              "check_gap": torch.full((b,), gap, dtype=torch.float64, device=y.device)}
    return Bound(terms, opts.name, exact=False, dims=y[0].numel(), variance=variance, extras=extras)


def _check(flow: Flow, z0: Tensor, vecs: Tensor, opts: ODEOptions, exact: bool, terms: dict[str, Tensor],
           nats: Tensor) -> float:
    """Re-solve the first `check` examples at the tighter setting (same start, same probes); raise
    ODEFailed when the mean |difference| exceeds the standard error of the batch's mean bound (for
    one example: 1e-3 nats per dimension).  Returns that mean |difference| (0 when off)."""
    m = min(opts.check, z0.shape[0])
    if m == 0:
        return 0.0
    tight, _, _ = flow_terms(flow, z0[:m], vecs[:, :m], opts.tighter(), exact=exact)
    flow_nats = terms["prior"][:m] + terms["divergence"][:m]
    gap = (tight["prior"] + tight["divergence"] - flow_nats).abs().mean().item()
    b = nats.shape[0]
    allowed = nats.std().item() / math.sqrt(b) if b > 1 else 1e-3 * z0[0].numel()
    if not gap <= allowed:
        raise ODEFailed(f"The ODE likelihood did not converge: at {opts.tighter().name} it moves by "
                        f"{gap:.4g} nats, more than the standard error {allowed:.4g}; use a smaller rtol "
                        "(or more steps).")
    return gap
