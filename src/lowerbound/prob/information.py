"""Entropy H(q) = -E_q[log q(z)] and cross-entropy H(q, p) = -E_q[log p(z)], in nats (Cover & Thomas,
"Elements of Information Theory", ch. 2 and 8).  They split the KL: KL(q || p) = H(q, p) - H(q).

Closed forms where torch knows the entropy (and, for the cross-entropy, the KL); Monte Carlo over
draws of q otherwise (DEFAULT_NUM_SAMPLES draws unless num_samples says otherwise), with its standard
error.  For continuous q these are differential entropies (may be negative).  Probability vectors
are read as Categorical, as in `kl_divergence`.
"""

from __future__ import annotations

import torch
import torch.distributions as D
from torch import Tensor

from ..errors import UserError
from .estimate import Estimate
from .kl import (
    DEFAULT_NUM_SAMPLES,
    Method,
    _check_method,
    as_distribution,
    closed_form_kl,
    log_prob_or_neg_inf,
    mc_estimate_allowing_inf,
)
from .montecarlo import _check_count, draw


def _closed_entropy(q: D.Distribution) -> Tensor | None:
    try:
        return q.entropy()
    except NotImplementedError:
        return None


def _mc_draws(q: D.Distribution, num_samples: int | None, generator) -> Tensor:
    n = DEFAULT_NUM_SAMPLES if num_samples is None else num_samples
    _check_count(n, "num_samples")
    return draw(q, (n,), generator=generator)


def entropy(
    q,
    *,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    method: Method = "auto",
) -> Estimate:
    """H(q) in nats, [batch].  method as in kl_divergence ("auto", "closed", "mc")."""
    q = as_distribution(q, "q")
    _check_method(method)
    if method != "mc":
        value = _closed_entropy(q)
        if value is not None:
            return Estimate.exact_value(value)
        if method == "closed":
            raise UserError(f"{type(q).__name__} has no closed-form entropy.")
    z = _mc_draws(q, num_samples, generator)
    return Estimate.from_samples(-q.log_prob(z), dim=0)


def cross_entropy(
    q,
    p,
    *,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    method: Method = "auto",
) -> Estimate:
    """H(q, p) = -E_q[log p(z)] in nats, [broadcast batch]; +inf where q puts mass where p has none.

    Closed form as H(q) + KL(q || p) when both are known, so kl_divergence == cross_entropy - entropy
    holds to rounding; Monte Carlo over draws of q otherwise.
    """
    q, p = as_distribution(q, "q"), as_distribution(p, "p")
    _check_method(method)
    if method != "mc":
        h, kl = _closed_entropy(q), closed_form_kl(q, p)
        if h is not None and kl is not None:
            return Estimate.exact_value(h + kl)
        if method == "closed":
            names = f"{type(q).__name__}, {type(p).__name__}"
            raise UserError(f"no closed-form cross-entropy is known for {names}.")
    z = _mc_draws(q, num_samples, generator)
    return mc_estimate_allowing_inf(-log_prob_or_neg_inf(p, z))
