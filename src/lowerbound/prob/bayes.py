"""Bayes' rule in log space, and the conjugate Normal-Normal case (known noise) in closed form.

    p(h | x) = p(h) p(x | h) / p(x),   p(x) = sum_h p(h) p(x | h)

computed as log p(h | x) = log p(h) + log p(x | h) - logsumexp_h(log p(h) + log p(x | h)), so likelihoods
of 1e-300 and far below (log-likelihoods of -1e5) neither underflow nor divide 0 by 0.
Normal-Normal: Bishop, "Pattern Recognition and Machine Learning" (2006), eqs. (2.141)-(2.142); the
evidence by the candidate's formula p(x) = p(x | mu) p(mu) / p(mu | x), at any mu (Besag 1989).
"""

from __future__ import annotations

import torch
import torch.distributions as D
from torch import Tensor

from ..errors import UserError


def bayes_rule(log_prior: Tensor, log_likelihood: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """(log_posterior, log_evidence) over a discrete set of hypotheses indexed by `dim`.

    log_prior and log_likelihood broadcast together (e.g. prior [H], likelihood [B, H]); the posterior
    has their broadcast shape and sums to 1 along dim; the evidence drops dim.  Nats.  A prior that does
    not sum to 1 scales the evidence by its total.  Raises UserError where every hypothesis has
    probability 0 (the posterior is then undefined).
    """
    log_prior, log_likelihood = torch.as_tensor(log_prior), torch.as_tensor(log_likelihood)
    if bool((log_prior == torch.inf).any()) or bool(torch.isnan(log_prior).any()):
        raise UserError("log_prior must be finite or -inf (a probability of 0), never +inf or nan.")
    if bool((log_likelihood == torch.inf).any()) or bool(torch.isnan(log_likelihood).any()):
        raise UserError("log_likelihood must be finite or -inf, never +inf or nan.")
    log_joint = log_prior + log_likelihood
    log_evidence = torch.logsumexp(log_joint, dim=dim, keepdim=True)
    if bool(torch.isneginf(log_evidence).any()):
        raise UserError("the evidence is 0: every hypothesis has prior times likelihood 0, "
                        "so no posterior exists.")
    return log_joint - log_evidence, log_evidence.squeeze(dim)


def normal_normal_posterior(
    prior_mean: Tensor | float,
    prior_std: Tensor | float,
    noise_std: Tensor | float,
    x: Tensor,
    dim: int = -1,
) -> tuple[D.Normal, Tensor]:
    """mu ~ N(prior_mean, prior_std^2), x_i | mu ~ N(mu, noise_std^2) i.i.d. along `dim` of x.

    Returns (p(mu | x) as a Normal over the remaining batch shape, log p(x) [batch] in nats).
    """
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    params = (prior_mean, prior_std, noise_std)
    m0, s0, s = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in params)
    if bool((s0 <= 0).any()) or bool((s <= 0).any()):
        raise UserError("prior_std and noise_std must be positive.")
    if x.dim() == 0 or x.shape[dim] == 0:
        raise UserError("x must hold at least one observation along dim.")
    n = x.shape[dim]
    precision = 1.0 / s0**2 + n / s**2
    mean = (m0 / s0**2 + x.sum(dim) / s**2) / precision
    posterior = D.Normal(mean, precision.rsqrt().expand_as(mean))
    # candidate's formula at mu = posterior mean: log p(x) = log p(x | mu) + log p(mu) - log p(mu | x)
    # s has the batch shape (or broadcasts to it): give it the observation axis before pairing with x
    log_lik = D.Normal(mean.unsqueeze(dim), s.expand_as(mean).unsqueeze(dim)).log_prob(x).sum(dim)
    log_evidence = log_lik + D.Normal(m0, s0).log_prob(mean) - posterior.log_prob(mean)
    return posterior, log_evidence
