"""Monte Carlo: draws from a distribution with a given torch.Generator, and E_q[f(z)] with its standard error.

`Distribution.rsample` takes no generator, so reproducible sampling needs care.  `draw` writes the
reparameterization (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", sec. 2.4) by hand for the
common families, z = loc + scale * eps with eps drawn from the generator, so gradients flow to the
parameters; any other distribution falls back to its own rsample/sample under a forked global RNG
seeded from the generator (same generator state -> same draws).

`monte_carlo(f, q, n)` is the plain sample mean with the standard error std / sqrt(n) (Robert & Casella,
"Monte Carlo Statistical Methods", ch. 3); a 95% interval value +- 1.96 stderr covers the truth about
95% of the time once n is large enough for the central limit theorem to apply.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributions as D
from torch import Tensor

from ..errors import UserError
from .estimate import Estimate

_SEED_BOUND = 2**62


def _shape(sample_shape) -> torch.Size:
    if isinstance(sample_shape, int):
        return torch.Size((sample_shape,))
    return torch.Size(sample_shape)


def _noise(kind: str, shape: torch.Size, like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard noise of `shape` on like's device and dtype, drawn from `generator`."""
    draw = torch.randn if kind == "normal" else torch.rand
    return draw(shape, generator=generator, device=like.device, dtype=like.dtype)


def _draw_normal(q: D.Normal, shape, g) -> Tensor:
    eps = _noise("normal", shape + q.batch_shape, q.loc, g)
    return q.loc + q.scale * eps


def _draw_mvn(q: D.MultivariateNormal, shape, g) -> Tensor:
    eps = _noise("normal", shape + q.batch_shape + q.event_shape, q.loc, g)
    return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)


def _draw_uniform(q: D.Uniform, shape, g) -> Tensor:
    u = _noise("uniform", shape + q.batch_shape, q.low, g)
    return q.low + (q.high - q.low) * u


def _draw_laplace(q: D.Laplace, shape, g) -> Tensor:
    # inverse CDF on u in (-1, 1), kept off the endpoints where log(0) would appear
    u = 2.0 * _noise("uniform", shape + q.batch_shape, q.loc, g) - 1.0
    u = u.clamp(-1.0 + torch.finfo(u.dtype).eps, 1.0 - torch.finfo(u.dtype).eps)
    return q.loc - q.scale * u.sign() * torch.log1p(-u.abs())


def _draw_categorical(q: D.Categorical, shape, g) -> Tensor:
    probs = q.probs.reshape(-1, q.probs.shape[-1])
    n = max(int(shape.numel()), 1)
    idx = torch.multinomial(probs, n, replacement=True, generator=g)  # [batch, n]
    return idx.T.reshape(shape + q.batch_shape)


def _draw_bernoulli(q: D.Bernoulli, shape, g) -> Tensor:
    u = _noise("uniform", shape + q.batch_shape, q.probs, g)
    return (u < q.probs).to(q.probs.dtype)


def _draw_independent(q: D.Independent, shape, g) -> Tensor:
    return draw(q.base_dist, shape, generator=g)


def _draw_transformed(q: D.TransformedDistribution, shape, g) -> Tensor:
    z = draw(q.base_dist, shape, generator=g)
    for t in q.transforms:
        z = t(z)
    return z


# Exact types only: a subclass may change the meaning of its parameters, so it takes the fallback.
_DRAWERS: dict[type, Callable] = {
    D.Normal: _draw_normal,
    D.MultivariateNormal: _draw_mvn,
    D.Uniform: _draw_uniform,
    D.Laplace: _draw_laplace,
    D.Categorical: _draw_categorical,
    D.Bernoulli: _draw_bernoulli,
    D.Independent: _draw_independent,
    D.TransformedDistribution: _draw_transformed,
    D.LogNormal: _draw_transformed,
}


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, _SEED_BOUND, (1,), generator=generator, device=generator.device).item())


def draw(q: D.Distribution, sample_shape=(), *, generator: torch.Generator | None = None) -> Tensor:
    """Samples of shape [*sample_shape, *q.batch_shape, *q.event_shape], reparameterized where q allows.

    With a generator the draw depends only on the generator's state; without one it uses the global RNG.
    Continuous families with rsample keep the gradient to q's parameters; discrete ones do not have one.
    """
    shape = _shape(sample_shape)
    if generator is None:
        return q.rsample(shape) if q.has_rsample else q.sample(shape)
    drawer = _DRAWERS.get(type(q))
    if drawer is not None:
        return drawer(q, shape, generator)
    # torch.manual_seed seeds every device: fork them all so the caller's global RNG is untouched
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_seed_from(generator))
        return q.rsample(shape) if q.has_rsample else q.sample(shape)


def monte_carlo(
    f: Callable[[Tensor], Tensor],
    q: D.Distribution,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> Estimate:
    """E_{z ~ q}[f(z)] as the mean of `num_samples` draws, with its standard error.

    f maps z [S, *batch, *event] to [S, *batch_f] (anything with the leading sample axis); the
    Estimate has shape [*batch_f].  Gradients flow through reparameterized draws.
    """
    _check_count(num_samples, "num_samples")
    if not isinstance(q, D.Distribution):
        raise UserError(f"monte_carlo needs a torch.distributions.Distribution, got {type(q).__name__}.")
    z = draw(q, (num_samples,), generator=generator)
    values = f(z)
    if not isinstance(values, Tensor) or values.dim() == 0 or values.shape[0] != num_samples:
        raise UserError("f must return a tensor whose first axis is the sample axis of its input.")
    return Estimate.from_samples(values, dim=0)


def _check_count(n, name: str, minimum: int = 2) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise UserError(f"{name} must be an integer of at least {minimum}, got {n!r}.")
