"""Family `flow`: normalizing flows, an exact density on continuous data and, through dequantization,
an honest bound on discrete data (Dinh et al. 2017; Kingma & Dhariwal 2018; Durkan et al. 2019;
Ho et al. 2019).  A bijection f maps data to z ~ N(0, I):

    log p(v) = log N(f(v); 0, I) + log |det df/dv|                         (exact, continuous)

Discrete data x (levels 0..K-1) are seen as y = 2x/(K-1) - 1 with bin width w = 2/(K-1) (design.md),
and a density on R^D gives a probability only after dequantization (Theis et al. 2016; Ho et al. 2019):

    -log P(x) <= E_{u ~ q(u|x)} [ -log p(y + w (u - 1/2)) - D log w ]  +  E_q [ log q(u | x) ]
                 `nll`: in the unit-cube units of u, the scaling Jacobian      `dequantization`
                 D log w included                                             (0 for uniform q)

q is uniform on [0, 1)^D (`dequantization: uniform`) or a conditional flow trained jointly
(`variational`, Flow++).  A continuous density may exceed 1 (log p > 0: nothing is wrong, it is a
density), but p(y + w(u - 1/2)) w^D integrates to P(x) <= 1 over the cube, so the bound on -log P(x)
stays >= 0 in expectation.  Estimators: "dequantization" (the bound above, averaged over S draws of u,
its variance reported) and "iw" (-log (1/K) sum_k p w^D / q over K draws: the importance-weighted
dequantization bound, tighter, approaching -log P(x) as K grows; its variance is the jackknife one of
prob.tails, as for the VAE's IWAE).  Continuous data: "exact".

Archs: nsf | realnvp | maf (zuko's transforms on the flattened data, flows/vector.py) and glow (our
multi-scale image flow, flows/glow.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import UserError
from ..prob.bound import Bound
from ..prob.tails import log_mean_exp_variance
from ..prob.units import bin_width, from_signed, to_signed
from . import work
from .base import GenerativeModel
from .flows.base import ActNorm, Bijection, Compose, standard_normal_log_prob
from .registry import register


@dataclass
class FlowConfig:
    """arch: nsf, realnvp and maf evaluate the density (training, bounds) in one pass.  Sampling is one
    pass too for nsf (coupling, `passes: 2`) and realnvp; maf (and nsf with `passes: 0`, fully
    autoregressive) samples in D sequential passes: the slow direction.  glow: images [C, H, W] only,
    H and W divisible by 2**scales; both directions one pass.

    transforms / hidden / bins / passes: the zuko flow (transforms 0 = the N(0, I) base alone, after a
    learned per-dimension affine map).  scales / steps / width / dropout: glow's levels, flow steps per
    level and coupling nets.  dequantization: uniform or variational (q(u|x) a conditional coupling
    nsf with dequant_transforms and dequant_hidden).  eval_samples: draws of u per example in
    bound(x) by default; iw_samples: the default K of the iw estimator; train_samples: draws of u
    averaged in the training loss; chunk_elements bounds memory of bound() (flow inputs per chunk)."""

    arch: Literal["nsf", "realnvp", "maf", "glow"] = "nsf"
    transforms: int = 6
    hidden: tuple[int, ...] = (128, 128)
    bins: int = 8
    passes: int = 2
    scales: int = 2
    steps: int = 8
    width: int = 64
    dropout: float = 0.0
    dequantization: Literal["uniform", "variational"] = "uniform"
    dequant_transforms: int = 2
    dequant_hidden: tuple[int, ...] = (128,)
    train_samples: int = 1
    eval_samples: int = 8
    iw_samples: int = 128
    chunk_elements: int = 1 << 22

    def __post_init__(self) -> None:
        checks = [
            (self.transforms >= 0, f"transforms must be >= 0, got {self.transforms}"),
            (all(h >= 1 for h in self.hidden + self.dequant_hidden), "hidden widths must be positive"),
            (self.bins >= 2, f"bins must be >= 2, got {self.bins}"),
            (self.passes in (0, 2), f"passes must be 2 (coupling) or 0 (autoregressive), got {self.passes}"),
            (min(self.scales, self.steps, self.width) >= 1, "scales, steps and width must be >= 1"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.dequant_transforms >= 1, f"dequant_transforms must be >= 1, got {self.dequant_transforms}"),
            (min(self.train_samples, self.eval_samples, self.iw_samples, self.chunk_elements) >= 1,
             "train_samples, eval_samples, iw_samples and chunk_elements must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"The flow option {message}.")


def build_transform(c: FlowConfig, shape: tuple[int, ...]) -> Bijection:
    """The bijection data -> z for `shape`: vector archs on the flattened data, glow on images."""
    if c.arch == "glow":
        from .flows.glow import Glow

        if len(shape) != 3:
            raise UserError(f"The glow arch needs images [C, H, W], got shape {tuple(shape)}; "
                            "use arch nsf, realnvp or maf for vectors.")
        return Glow(tuple(shape), scales=c.scales, steps=c.steps, width=c.width, dropout=c.dropout)
    from .flows.vector import ZukoBijection

    dims = math.prod(shape)
    if not c.transforms:
        return Compose(ActNorm(dims))
    if dims < 2 and c.arch != "realnvp":
        raise UserError(f"The {c.arch} arch needs at least 2 dimensions, got shape {tuple(shape)}.")
    flow = ZukoBijection(c.arch, dims, transforms=c.transforms, hidden=c.hidden, bins=c.bins,
                         passes=c.passes)
    return Compose(ActNorm(dims), flow)


class Flow(GenerativeModel):
    """A flow over data of `shape` with `levels` (None: continuous data, exact density)."""

    family = "flow"
    estimators = ("dequantization", "iw")
    tight_estimator = ("iw", None)  # importance-weighted dequantization (Ho et al. 2019), iw_samples draws

    def __init__(self, config: FlowConfig, levels: int | None, shape: tuple[int, ...]):
        super().__init__(levels=levels, shape=shape, config=config)
        if levels is None:
            self.estimators = ("exact",)
        self.transform = build_transform(config, self.shape)
        self.dequantizer = None
        if levels is not None and config.dequantization == "variational":
            from .flows.dequantizer import VariationalDequantizer

            self.dequantizer = VariationalDequantizer(self.dims, transforms=config.dequant_transforms,
                                                      hidden=config.dequant_hidden, bins=config.bins)

    # ------------------------------------------------------------ the density
    def _layout(self, v: Tensor) -> Tensor:
        """[N, *shape] -> the transform's input: images as they are for glow, else flattened."""
        return v if self.config.arch == "glow" else v.reshape(v.shape[0], -1)

    def log_density(self, v: Tensor) -> Tensor:
        """[N, *shape] floats -> [N] log p(v) nats (on the [-1, 1] scale for discrete data)."""
        z, ladj = self.transform(self._layout(v))
        return standard_normal_log_prob(z) + ladj

    def _log_weights(self, x: Tensor, n: int, generator) -> tuple[Tensor, Tensor]:
        """n draws u ~ q(u|x): (log p(y + w(u - 1/2)) + D log w [n, B], log q(u | x) [n, B]) nats."""
        dtype = self._dtype()
        y = to_signed(x, self.levels).to(dtype)
        b, w = y.shape[0], bin_width(self.levels)
        if self.dequantizer is None:
            u = torch.rand((n, *y.shape), generator=generator, device=y.device, dtype=dtype)
            log_q = y.new_zeros(n, b)
        else:
            u, log_q = self.dequantizer.sample(y.reshape(b, -1), n, generator)
            u = u.view(n, *y.shape)
        v = (y + w * (u - 0.5)).reshape(n * b, *self.shape)
        log_p = self.log_density(v).view(n, b) + self.dims * math.log(w)
        return log_p, log_q

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ------------------------------------------------------------ the contract
    def loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> Bound:
        """The training objective: the dequantization bound with train_samples draws (exact nll on
        continuous data)."""
        if self.levels is None:
            return self.bound(x, generator=generator)
        return self._dequantization_bound(x, self.config.train_samples, generator)

    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None) -> Bound:
        """Upper bound on -log P(x) per example, [B] nats.  Continuous data: "exact", term nll =
        -log p(x).  Discrete data: "dequantization" (terms nll and dequantization averaged over
        `samples` draws of u, default eval_samples; variance of that average) or "iw" (term nll,
        the K-draw importance-weighted bound, K = `samples` or iw_samples; extras: the K-draw plain
        bound, the gap plain - iw >= 0, and dequantization, E_q log q on the same draws)."""
        estimator = self.resolve_estimator(estimator, samples)
        if estimator == "exact":
            nll = -self.log_density(x.to(self._dtype()))
            return Bound({"nll": nll}, "exact", exact=True, dims=self.dims)
        if estimator == "iw":
            return self._iw_bound(x, samples or self.config.iw_samples, generator)
        return self._dequantization_bound(x, samples or self.config.eval_samples, generator)

    def _chunk(self, batch: int) -> int:
        return max(1, self.config.chunk_elements // max(1, batch * self.dims))

    def _draws(self, x: Tensor, n: int, generator) -> tuple[Tensor, Tensor]:
        """_log_weights of n draws in chunks (memory bounded; each chunk moves the progress bar,
        models/work.py): log p [n, B], log q [n, B]."""
        m = self._chunk(x.shape[0])
        work.plan(n)
        log_p, log_q = [], []
        for i in range(0, n, m):
            p, q = self._log_weights(x, min(m, n - i), generator)
            log_p.append(p)
            log_q.append(q)
            work.advance(p.shape[0])
        return torch.cat(log_p), torch.cat(log_q)

    def _dequantization_bound(self, x: Tensor, n: int, generator) -> Bound:
        log_p, log_q = self._draws(x, n, generator)
        variance = (log_p - log_q).var(0) / n if n > 1 else None
        terms = {"nll": -log_p.mean(0), "dequantization": log_q.mean(0)}
        return Bound(terms, f"dequantization-s={n}", dims=self.dims, variance=variance)

    def _iw_bound(self, x: Tensor, k: int, generator) -> Bound:
        log_p, log_q = self._draws(x, k, generator)
        log_w = log_p - log_q  # [K, B]: log p(y + w(u - 1/2)) w^D / q(u | x)
        nll = math.log(k) - torch.logsumexp(log_w, 0)
        plain = -log_w.mean(0)
        variance = log_mean_exp_variance(log_w).to(nll.dtype) if k > 1 else None
        extras = {"bound": plain, "gap": plain - nll, "dequantization": log_q.mean(0)}
        return Bound({"nll": nll}, f"iw-k={k}", dims=self.dims, variance=variance, extras=extras)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws: v = f^{-1}(z), z ~ N(0, I); discrete data take the level whose bin holds v (mass
        beyond the outer bins, which the bound does not count, is clamped into them)."""
        z = torch.randn((n, self.dims), generator=generator, device=self.device, dtype=self._dtype())
        v = self.transform.inverse(z).reshape(n, *self.shape)
        if self.levels is None:
            return v.to(torch.get_default_dtype())
        return from_signed(v, self.levels)


@register("flow", FlowConfig, "normalizing flow: nsf / realnvp / maf (zuko) or glow; exact density, "
          "uniform or variational dequantization, iw bound")
def build(config: FlowConfig, levels: int | None, shape: tuple[int, ...]) -> Flow:
    return Flow(config, levels, shape)
