"""Any continuous density with log_prob(v) scored on discrete data by uniform dequantization.

A flow from zuko, normflows or nflows (or any torch.distributions.Distribution) trained on the
continuous scale gives a density p(v), not a probability of the discrete data.  Each level x of K owns a
bin of width w around its centre y = low + x w, w = (high - low) / (K - 1) (design.md: [-1, 1], so
w = 2 / (K - 1)), and P(x) = w^D E_{u ~ U(-1/2, 1/2)^D}[p(y + w u)] (Theis et al. 2016, "A note on the
evaluation of generative models"); the importance-weighted estimate over k draws of u (Burda et al.
2016; Ho et al. 2019, "Flow++", sec. 3.2)

    -log P(x) <= -log (1/k) sum_j p(y + w u_j)  -  D log w          (in expectation; tighter as k grows)
                 `nll`                              `dequantization`

is a valid upper bound in nats for every k and approaches -log P(x) as k grows; estimator "dequantization"
is the plain k-draw average of -log p(y + w u_j) (Jensen's bound, looser).  Density outside the outer
bins is not counted, so the bound stays valid for a flow whose mass leaks beyond the data's range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..models.base import GenerativeModel
from ..prob.bound import Bound
from ..prob.importance import LogMeanExp


class DequantizedFlow(GenerativeModel):
    """obj: a density with log_prob(v [N, D]) -> [N] nats (flat=True, the usual flow layout) or
    log_prob(v [N, *shape]) (flat=False); or a callable returning one (zuko's lazy flows).
    low, high: the continuous values of levels 0 and K - 1.  iw_samples: default k of bound()."""

    family = "adapted-flow"
    estimators = ("iw", "dequantization")

    def __init__(self, obj, *, levels: int, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0,
                 flat: bool = True, iw_samples: int = 128, chunk_rows: int = 65536):
        super().__init__(levels=levels, shape=shape)
        if not callable(getattr(obj, "log_prob", None)) and not callable(obj):
            raise UserError(f"A {type(obj).__name__} has no log_prob(x); give a flow or a distribution.")
        if not high > low:
            raise UserError(f"high ({high}) must be above low ({low}).")
        if iw_samples < 1 or chunk_rows < 1:
            raise UserError("iw_samples and chunk_rows must be at least 1.")
        if isinstance(obj, nn.Module):
            self.flow = obj  # registered: .to(device) and .parameters() reach it
        else:
            self._obj = obj
        self.low, self.width = float(low), (float(high) - float(low)) / (levels - 1)
        self.flat, self.iw_samples, self.chunk_rows = bool(flat), int(iw_samples), int(chunk_rows)

    # ------------------------------------------------------------ the density
    @property
    def obj(self):
        return self.flow if isinstance(getattr(self, "flow", None), nn.Module) else self._obj

    def distribution(self):
        """The object whose log_prob is used: obj itself, or obj() for a lazy distribution (zuko)."""
        obj = self.obj
        return obj if callable(getattr(obj, "log_prob", None)) else obj()

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        mean = getattr(self.obj, "mean", None)
        floating = isinstance(mean, Tensor) and mean.is_floating_point()
        return mean.dtype if floating else torch.get_default_dtype()

    def log_density(self, v: Tensor) -> Tensor:
        """[N, *shape] floats on the continuous scale -> [N] log p(v) nats."""
        out = self.distribution().log_prob(v.flatten(1) if self.flat else v)
        if tuple(out.shape) != (v.shape[0],):
            raise UserError(f"log_prob returned shape {tuple(out.shape)} for {v.shape[0]} examples; it must "
                            "return one log-density per example (try flat=False, or sum its event dims).")
        return out

    def _centres(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape or x.is_floating_point() or x.min() < 0 or x.max() >= self.levels:
            raise UserError(f"The adapted flow scores integer levels 0..{self.levels - 1} of shape "
                            f"{self.shape}, got a {x.dtype} batch of shape {tuple(x.shape)}.")
        return self.low + x.to(self._dtype()) * self.width

    def _log_weights(self, y: Tensor, n: int, generator) -> Tensor:
        """[n, B] log p(y + w u) nats for n draws of u ~ U(-1/2, 1/2)^D per example."""
        u = torch.rand((n, *y.shape), generator=generator, device=y.device, dtype=y.dtype) - 0.5
        v = (y + self.width * u).reshape(n * y.shape[0], *self.shape)
        return self.log_density(v).reshape(n, y.shape[0])

    # ------------------------------------------------------------ the contract
    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None) -> Bound:
        """Upper bound on -log P(x), [B] nats: nll (module docstring, k = samples or iw_samples draws)
        plus dequantization = -D log w.  Bound.variance: the delta-method variance of the iw estimate
        (prob.importance), or the sample variance / k of the plain one; None for k = 1."""
        estimator = self.resolve_estimator(estimator, samples)
        k = samples or self.iw_samples
        y = self._centres(x.to(self.device))
        per_call = max(1, self.chunk_rows // max(1, y.shape[0]))
        log_w = torch.cat([self._log_weights(y, min(per_call, k - s), generator)
                           for s in range(0, k, per_call)]).double()
        deq = torch.full((y.shape[0],), -self.dims * math.log(self.width), dtype=torch.float64,
                         device=y.device)
        acc = LogMeanExp()
        acc.add(log_w)
        if estimator == "iw":
            extras = {"plain": acc.plain_bound() + deq, "gap": acc.plain_bound() - acc.bound()}
            return Bound({"nll": acc.bound(), "dequantization": deq}, f"iw-k={k}", dims=self.dims,
                         variance=acc.variance(), extras=extras)
        variance = log_w.var(0) / k if k > 1 else None
        return Bound({"nll": acc.plain_bound(), "dequantization": deq}, f"dequantization-s={k}",
                     dims=self.dims, variance=variance)

    def loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> Bound:
        """The one-draw dequantization bound: fine-tuning with our loop trains the flow on it."""
        return self.bound(x, estimator="dequantization", samples=1, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the continuous density, each read as the level whose bin holds it (draws beyond
        the outer bins, which the bound does not count, are clamped into them).  [n, *shape] long."""
        dist = self.distribution()
        seed = None if generator is None else int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            if isinstance(dist, torch.distributions.Distribution):
                v = dist.sample((n,))
            elif callable(getattr(dist, "sample", None)):
                v = dist.sample(n)
            else:
                raise UserError(f"A {type(dist).__name__} has no sample(); the adapted flow can only be "
                                "scored.")
        if isinstance(v, (tuple, list)):  # normflows returns (samples, log_prob)
            v = v[0]
        levels = torch.round((v.reshape(n, *self.shape).double() - self.low) / self.width)
        return levels.clamp(0, self.levels - 1).long()


def from_flow(obj, levels: int, shape: tuple[int, ...], **options) -> DequantizedFlow:
    """A model keeping our contract around any density with log_prob (zuko, normflows, nflows,
    torch.distributions); options: low, high, flat, iw_samples, chunk_rows (DequantizedFlow)."""
    return DequantizedFlow(obj, levels=levels, shape=tuple(shape), **options)
