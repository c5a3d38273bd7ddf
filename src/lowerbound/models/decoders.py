"""Output likelihoods p(x | decoder output) for a VAE's decoder, one small class per name.

    categorical             softmax over the K levels of every dimension
    discretized-logistic    a mixture of M logistics integrated over each level's bin, the outer bins
                            extended to +-inf (Salimans et al. 2017, PixelCNN++, section 2.1)
    bernoulli               binary data (K = 2): one logit per dimension
    gaussian                a density on y = 2x/(K-1) - 1, scored on uniformly dequantized data with
                            the D log(bin width) term (Theis et al. 2016), or directly on continuous data

The net emits `out` of shape [B, P, *shape] (P = `num_params` numbers per data dimension); the
likelihood turns it into log P(x | out) per example [B] in nats, draws x, and finds its most likely
value.  Extend by registration (`@register_decoder(name)`), not by an if-chain.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..prob.units import bin_width, dequantize, from_signed, to_signed

DECODERS: dict[str, type[Decoder]] = {}


def register_decoder(name: str):
    def deco(cls):
        cls.name = name
        DECODERS[name] = cls
        return cls

    return deco


def make_decoder(name: str, levels: int | None, shape: tuple[int, ...], **options) -> Decoder:
    """The likelihood `name` for data with `levels` (None: continuous) of one example's `shape`."""
    if name not in DECODERS:
        raise UserError(f"Unknown decoder {name!r}; choose one of: {', '.join(sorted(DECODERS))}.")
    return DECODERS[name](levels, tuple(shape), **options)


def _gumbel_argmax(logits: Tensor, dim: int, generator: torch.Generator | None) -> Tensor:
    """A draw from softmax(logits) along `dim` by the Gumbel-max trick (generator-friendly)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    u = u.clamp(1e-12, 1.0 - 1e-7)
    return (logits - torch.log(-torch.log(u))).argmax(dim)


def _sum_dims(t: Tensor) -> Tensor:
    """[B, *shape] -> [B]."""
    return t.reshape(t.shape[0], -1).sum(1)


class Decoder(nn.Module):
    """log_prob(x, out) -> [B] nats; sample(out) and mode(out) -> x in the data layout [B, *shape]."""

    name: ClassVar[str] = "?"
    discrete: ClassVar[bool] = True  # log_prob is an exact discrete log-probability
    num_params: int = 1  # P: numbers the net emits per data dimension

    def __init__(self, levels: int | None, shape: tuple[int, ...]):
        super().__init__()
        self.levels, self.shape = levels, shape

    def log_prob(self, x: Tensor, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def mode(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def _need_levels(self) -> int:
        if self.levels is None:
            raise UserError(f"The {self.name} decoder needs discrete data with levels; "
                            f"use the gaussian decoder for continuous data.")
        return self.levels


class DiscreteDecoder(Decoder):
    """A decoder over levels 0..K-1 that can list log P(level) for every level of every dimension."""

    def level_log_probs(self, out: Tensor) -> Tensor:
        """[B, P, *shape] -> [B, K, *shape]: log P(x_d = k | out), normalized over k."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return _sum_dims(self.level_log_probs(out).gather(1, x.long().unsqueeze(1)).squeeze(1))

    def sample(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return _gumbel_argmax(self.level_log_probs(out), 1, generator)

    def mode(self, out: Tensor) -> Tensor:
        return self.level_log_probs(out).argmax(1)


@register_decoder("categorical")
class CategoricalDecoder(DiscreteDecoder):
    """P = K logits per dimension."""

    def __init__(self, levels: int | None, shape: tuple[int, ...]):
        super().__init__(levels, shape)
        self.num_params = self._need_levels()

    def level_log_probs(self, out: Tensor) -> Tensor:
        return F.log_softmax(out, dim=1)

    def log_prob(self, x: Tensor, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # cross_entropy fuses log_softmax and the gather: one pass, less memory than the base class
        return -_sum_dims(F.cross_entropy(out, x.long(), reduction="none"))


@register_decoder("bernoulli")
class BernoulliDecoder(DiscreteDecoder):
    """P = 1 logit per dimension; binary data only (K = 2)."""

    num_params = 1

    def __init__(self, levels: int | None, shape: tuple[int, ...]):
        super().__init__(levels, shape)
        if levels != 2:
            raise UserError(f"The bernoulli decoder needs binary data (2 levels), got levels={levels}.")

    def level_log_probs(self, out: Tensor) -> Tensor:
        logit = out[:, 0]
        return torch.stack([F.logsigmoid(-logit), F.logsigmoid(logit)], 1)

    def log_prob(self, x: Tensor, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        target = x.to(out.dtype)
        return -_sum_dims(F.binary_cross_entropy_with_logits(out[:, 0], target, reduction="none"))


def _log_sigmoid_difference(a: Tensor, b: Tensor) -> Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b, stable in both tails:
    sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b)))."""
    d = (a - b).clamp_min(1e-12)
    return F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-d))


@register_decoder("discretized-logistic")
class DiscretizedLogisticDecoder(Decoder):
    """P = 3M per dimension: M mixture logits, M means and M log-scales on the [-1, 1] scale."""

    min_log_scale: ClassVar[float] = -7.0

    def __init__(self, levels: int | None, shape: tuple[int, ...], mixtures: int = 1):
        super().__init__(levels, shape)
        self._need_levels()
        if mixtures < 1:
            raise UserError(f"The discretized-logistic decoder needs mixtures >= 1, got {mixtures}.")
        self.mixtures = mixtures
        self.num_params = 3 * mixtures

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.mixtures
        logits, mean, log_scale = out[:, :m], out[:, m:2 * m], out[:, 2 * m:3 * m]
        return F.log_softmax(logits, 1), mean, log_scale.clamp_min(self.min_log_scale)

    def _component_log_probs(self, y: Tensor, mean: Tensor, log_scale: Tensor, k: Tensor) -> Tensor:
        """log P(level k | one logistic component), y the bin centre; all [B, M, *shape]."""
        half = bin_width(self.levels) / 2
        inv_s = torch.exp(-log_scale)
        upper = (y + half - mean) * inv_s
        lower = (y - half - mean) * inv_s
        middle = _log_sigmoid_difference(upper, lower)
        lp = torch.where(k == 0, F.logsigmoid(upper), middle)
        return torch.where(k == self.levels - 1, F.logsigmoid(-lower), lp)

    def log_prob(self, x: Tensor, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        log_w, mean, log_scale = self._split(out)
        k = x.long().unsqueeze(1)
        lp = self._component_log_probs(to_signed(k, self.levels).to(out.dtype), mean, log_scale, k)
        return _sum_dims(torch.logsumexp(log_w + lp, 1))

    def level_log_probs(self, out: Tensor) -> Tensor:
        """[B, K, *shape] for every level (K times the work of log_prob; for mode and tests)."""
        log_w, mean, log_scale = self._split(out)
        rows = []
        for k in range(self.levels):
            kk = torch.full_like(mean, k, dtype=torch.long)
            y = torch.full_like(mean, k * bin_width(self.levels) - 1.0)
            rows.append(torch.logsumexp(log_w + self._component_log_probs(y, mean, log_scale, kk), 1))
        return torch.stack(rows, 1)

    def sample(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        log_w, mean, log_scale = self._split(out)
        pick = _gumbel_argmax(log_w, 1, generator).unsqueeze(1)
        mu, s = mean.gather(1, pick).squeeze(1), log_scale.gather(1, pick).squeeze(1).exp()
        u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = u.clamp(1e-6, 1.0 - 1e-6)
        return from_signed(mu + s * (torch.log(u) - torch.log1p(-u)), self.levels)

    def mode(self, out: Tensor) -> Tensor:
        return self.level_log_probs(out).argmax(1)


@register_decoder("gaussian")
class GaussianDecoder(Decoder):
    """A diagonal Gaussian density on the [-1, 1] scale (or on continuous data as they are).

    scale "output": the net emits mean and log-scale (P = 2); "shared": the net emits the mean (P = 1)
    and one learned log-scale serves every dimension (the probabilistic-PCA noise model).
    On discrete data log_prob is a single-draw dequantization bound, E_u[log p(y + u)] + D log w <=
    log P(x), so it is a lower bound on the discrete log-probability, not the probability itself.
    """

    discrete: ClassVar[bool] = False
    min_log_scale: ClassVar[float] = -9.0

    def __init__(self, levels: int | None, shape: tuple[int, ...], scale: str = "output"):
        super().__init__(levels, shape)
        if scale not in ("output", "shared"):
            raise UserError(f"The gaussian decoder's scale must be 'output' or 'shared', got {scale!r}.")
        self.scale = scale
        self.num_params = 2 if scale == "output" else 1
        if scale == "shared":
            self.log_scale = nn.Parameter(torch.zeros(()))
        self.dims = math.prod(shape)

    def mean_and_log_scale(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """[B, P, *shape] -> mean, log-scale, each [B, *shape]."""
        mean = out[:, 0]
        log_scale = out[:, 1] if self.scale == "output" else self.log_scale.expand_as(mean)
        return mean, log_scale.clamp_min(self.min_log_scale)

    def log_prob(self, x: Tensor, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mean, log_scale = self.mean_and_log_scale(out)
        if self.levels is None:
            y, jacobian = x.to(out.dtype), 0.0
        else:
            y = dequantize(x, self.levels, generator).to(out.dtype)
            jacobian = self.dims * math.log(bin_width(self.levels))
        z = (y - mean) * torch.exp(-log_scale)
        lp = -0.5 * z * z - log_scale - 0.5 * math.log(2 * math.pi)
        return _sum_dims(lp) + jacobian

    def sample(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mean, log_scale = self.mean_and_log_scale(out)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        y = mean + eps * log_scale.exp()
        return y if self.levels is None else from_signed(y, self.levels)

    def mode(self, out: Tensor) -> Tensor:
        mean, _ = self.mean_and_log_scale(out)
        # equal-width bins and a symmetric unimodal density: the bin nearest the mean holds most mass
        return mean if self.levels is None else from_signed(mean, self.levels)
