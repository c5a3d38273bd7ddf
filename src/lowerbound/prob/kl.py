"""KL(q || p) = E_q[log q(z) - log p(z)] in nats: closed form where known, Monte Carlo otherwise.

Closed forms come from torch.distributions' KL registry (one function per pair of types, found by
type) plus the pairs registered here that variational inference needs and torch lacks: a diagonal
Gaussian (Independent(Normal, 1)) against a full-covariance MultivariateNormal, both ways; the
Gaussian KL is eq. (A.23) of Rasmussen & Williams, "Gaussian Processes for Machine Learning" (2006),
which torch's MultivariateNormal pair computes once the diagonal Gaussian is written as one.
Importing this module registers them (torch's registry is global).

Without a closed form the estimate is the sample mean of log q(z) - log p(z) over z ~ q
(DEFAULT_NUM_SAMPLES draws unless num_samples says otherwise), with its standard error; a draw
outside p's support gives +inf, as the KL is then infinite.  The normal-approximation interval needs
a finite variance of the log-ratios: where the Pareto k-hat of their heavier tail (prob.tails; Vehtari
et al. 2024) exceeds TAIL_K_LIMIT = 1/2, the bound beyond which the variance is infinite, a TailWarning
is issued and the stderr is inf instead of a confident interval.  (Vehtari et al.'s 0.7 is where the
mean itself stops being reliable; the interval fails earlier.)  Measured over 1000 repeats: StudentT(5)
|| Normal, whose plain interval holds the truth 80% of the time at n = 200 and 88% at n = 1000, is
flagged 95% and 86% of the time, so the intervals reported (inf where flagged) hold it 96.7% and 94.8%
of the time (threshold 0.7: 91.5%, 89.1%); Normal(0, 1.5) || Normal is flagged 2% and 0%.  The
diagnostic is a heuristic: a density spike near the tail's threshold (Normal || Laplace at n = 1000)
flags a light tail, which costs an interval, not its honesty.  Probability vectors (last axis
non-negative, summing to 1) are accepted wherever a distribution is and read as Categorical.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.distributions as D
from torch import Tensor

from ..errors import UserError
from .estimate import Estimate
from .montecarlo import _check_count, draw
from .tails import tail_shape

DEFAULT_NUM_SAMPLES = 1000
TAIL_K_LIMIT = 0.5
Method = Literal["auto", "closed", "mc"]
_METHODS = ("auto", "closed", "mc")


def as_distribution(q, name: str = "q") -> D.Distribution:
    """A Distribution as is; a probability-vector tensor (last axis sums to 1) as a Categorical."""
    if isinstance(q, D.Distribution):
        return q
    if isinstance(q, Tensor):
        if q.dim() == 0 or not q.is_floating_point():
            raise UserError(f"{name} must be a distribution or a float tensor of probability vectors.")
        tol = 1e-4 if q.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-10
        ok_sign = bool((q >= 0).all())
        ok_sum = bool(torch.allclose(q.sum(-1), torch.ones((), dtype=q.dtype, device=q.device), atol=tol))
        if not (ok_sign and ok_sum):
            raise UserError(f"{name} is a tensor whose last axis is not a probability vector "
                            "(entries >= 0 that sum to 1).")
        return D.Categorical(probs=q)
    raise UserError(f"{name} must be a torch.distributions.Distribution or a probability tensor, "
                    f"got {type(q).__name__}.")


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise UserError(f"method must be one of {', '.join(_METHODS)}, got {method!r}.")


def log_prob_or_neg_inf(p: D.Distribution, z: Tensor) -> Tensor:
    """log p(z), with -inf (not an error) where z lies outside p's support."""
    try:
        inside = p.support.check(z)
    except (NotImplementedError, ValueError):  # a dependent support cannot be checked: trust log_prob
        inside = torch.ones((), dtype=torch.bool, device=z.device)
    validate = p._validate_args
    p._validate_args = False  # the support test above replaces the check that would raise
    try:
        lp = p.log_prob(z)
    finally:
        p._validate_args = validate
    # torch clamps probabilities when it builds logits, so an outcome of probability exactly 0 gets
    # a large finite negative log_prob: mark those as outside the support too
    zero = _zero_mass(p, z)
    if zero is not None:
        inside = inside & ~zero
    return torch.where(inside, lp, torch.full_like(lp, -torch.inf))


def _zero_mass(p: D.Distribution, z: Tensor) -> Tensor | None:
    """[sample/batch] True where a discrete p gives z probability exactly 0; None for other families."""
    if isinstance(p, D.Independent):
        inner = _zero_mass(p.base_dist, z)
        if inner is None:
            return None
        return inner.flatten(inner.dim() - p.reinterpreted_batch_ndims).any(-1)
    if isinstance(p, D.Categorical) and not isinstance(p, D.OneHotCategorical):
        probs = p.probs.expand(*z.shape, p.probs.shape[-1])
        idx = z.long().clamp(0, probs.shape[-1] - 1).unsqueeze(-1)
        return probs.gather(-1, idx).squeeze(-1) == 0
    if isinstance(p, D.OneHotCategorical):
        return ((p.probs == 0) & (z > 0)).any(-1)
    if isinstance(p, D.Bernoulli):
        probs = p.probs.expand_as(z)
        return ((probs == 0) & (z > 0)) | ((probs == 1) & (z < 1))
    return None


def closed_form_kl(q: D.Distribution, p: D.Distribution) -> Tensor | None:
    """KL(q || p) [batch] from the registry, or None when no closed form is registered for the pair."""
    try:
        return D.kl_divergence(q, p)
    except NotImplementedError:
        return None


def kl_divergence(
    q,
    p,
    *,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    method: Method = "auto",
) -> Estimate:
    """KL(q || p) in nats, shape = the broadcast batch shape.

    method "auto": the closed form when registered, else Monte Carlo; "closed": the closed form or a
    UserError; "mc": Monte Carlo over num_samples draws of q (default DEFAULT_NUM_SAMPLES = 1000).
    """
    q, p = as_distribution(q, "q"), as_distribution(p, "p")
    _check_method(method)
    if method != "mc":
        value = closed_form_kl(q, p)
        if value is not None:
            return Estimate.exact_value(value)
        if method == "closed":
            raise UserError(f"no closed-form KL is registered for {type(q).__name__} || {type(p).__name__}.")
    n = DEFAULT_NUM_SAMPLES if num_samples is None else num_samples
    _check_count(n, "num_samples")
    z = draw(q, (n,), generator=generator)
    return mc_estimate_allowing_inf(q.log_prob(z) - log_prob_or_neg_inf(p, z))


class TailWarning(UserWarning):
    """A Monte Carlo estimate whose draws have too heavy a tail for its normal-approximation interval."""


def mc_estimate_allowing_inf(samples: Tensor) -> Estimate:
    """Monte Carlo mean over dim 0 where a draw may be +inf (a draw where p has no mass): one such
    draw proves the expectation infinite, so no uncertainty is left there (stderr 0, not nan).
    Where the draws' heavier tail has Pareto k-hat > TAIL_K_LIMIT the stderr is inf (TailWarning)."""
    est = Estimate.from_samples(samples, dim=0)
    certain = torch.isposinf(est.value)
    k = torch.maximum(tail_shape(samples), tail_shape(-samples)).to(est.value.device)
    heavy = (k > TAIL_K_LIMIT) & ~certain
    if bool(heavy.any()):
        worst = k[heavy].max().item()
        warnings.warn(f"The Monte Carlo draws have a heavy tail (Pareto k-hat {worst:.2f} > {TAIL_K_LIMIT}): "
                      "the normal interval is unreliable, so the stderr is reported as inf; use a closed "
                      "form or check with more draws.", TailWarning, stacklevel=3)
    stderr = torch.where(certain, 0.0, torch.where(heavy, torch.inf, est.stderr))
    return Estimate(est.value, stderr, est.num_samples, False, tail_k=k)


# ------------------------------------------------------------------ pairs torch lacks
def _diagonal_as_mvn(d: D.Independent) -> D.MultivariateNormal:
    """Independent(Normal, 1) -> the same Gaussian as a MultivariateNormal; else NotImplementedError."""
    if not (type(d.base_dist) is D.Normal and d.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    scale = d.base_dist.scale.expand(d.base_dist.batch_shape)
    # a diagonal with positive entries is a valid Cholesky factor: skip the (slow) validation
    return D.MultivariateNormal(d.base_dist.loc, scale_tril=torch.diag_embed(scale), validate_args=False)


@D.register_kl(D.Independent, D.MultivariateNormal)
def _kl_diagonal_mvn(q: D.Independent, p: D.MultivariateNormal) -> Tensor:
    return D.kl_divergence(_diagonal_as_mvn(q), p)


@D.register_kl(D.MultivariateNormal, D.Independent)
def _kl_mvn_diagonal(q: D.MultivariateNormal, p: D.Independent) -> Tensor:
    return D.kl_divergence(q, _diagonal_as_mvn(p))
