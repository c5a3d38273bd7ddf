"""Variational inference: the evidence lower bound (ELBO), its two terms, and the importance-weighted bound.

    log p(x) >= E_q[log p(x, z) - log q(z)]                                   (ELBO)
             =  E_q[log p(x | z)] - KL(q(z) || p(z))                 (reconstruction - kl)
    log p(x) =  ELBO(q) + KL(q(z) || p(z | x))                                (the identity)
    log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i)],  z_i ~ q i.i.d.         (IWAE, k draws)

Kingma & Welling (2014), "Auto-Encoding Variational Bayes"; Burda, Grosse & Salakhutdinov (2016),
"Importance Weighted Autoencoders" (the IWAE bound grows with k and tends to log p(x)).

Conventions: `log_joint(z)` returns log p(x, z) for the observed x; it receives z of shape
[*sample, *batch, *event] (leading sample axes, then q's batch and event shape) and returns
[*sample, *batch].  Draws are reparameterized (see montecarlo.draw), so every Estimate's value
carries gradients to q's parameters.  Everything is in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributions as D
from torch import Tensor

from ..errors import UserError
from .estimate import Estimate
from .kl import as_distribution, closed_form_kl, log_prob_or_neg_inf
from .montecarlo import _check_count, draw
from .tails import log_mean_exp_variance

LogDensity = Callable[[Tensor], Tensor]


def _evaluate(fn: LogDensity, z: Tensor, n_lead: int, name: str) -> Tensor:
    """fn(z), checked to keep z's leading sample axes: [*sample, *batch]."""
    out = fn(z)
    lead = z.shape[:n_lead]
    if not isinstance(out, Tensor) or out.shape[:n_lead] != lead:
        raise UserError(f"{name} must return a tensor whose leading axes are the sample axes "
                        f"{tuple(lead)} of z, got {getattr(out, 'shape', type(out).__name__)}.")
    return out


def elbo(
    log_joint: LogDensity,
    q: D.Distribution,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Estimate:
    """E_q[log p(x, z) - log q(z)] in nats, [batch], averaged over num_samples draws of q.

    With one draw the stderr is inf (one sample says nothing about its spread); with q the exact
    posterior every draw equals log p(x), so the stderr is 0.
    """
    _check_count(num_samples, "num_samples", minimum=1)
    q = as_distribution(q, "q")
    z = draw(q, (num_samples,), generator=generator)
    log_w = _evaluate(log_joint, z, 1, "log_joint") - q.log_prob(z)
    return Estimate.from_samples(log_w, dim=0)


@dataclass(frozen=True)
class ElboTerms:
    """The ELBO split into its two terms (nats, [batch] each): elbo = reconstruction - kl.

    `elbo` is computed from the same draws as the two terms, so its stderr accounts for their
    correlation when the kl is itself estimated by Monte Carlo."""

    reconstruction: Estimate
    kl: Estimate
    elbo: Estimate


def elbo_terms(
    log_likelihood: LogDensity,
    q: D.Distribution,
    prior: D.Distribution,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> ElboTerms:
    """reconstruction = E_q[log p(x | z)] (Monte Carlo) and kl = KL(q || prior) (closed form when
    registered, else Monte Carlo on the same draws).  log_likelihood(z) follows log_joint's shapes."""
    _check_count(num_samples, "num_samples", minimum=1)
    q, prior = as_distribution(q, "q"), as_distribution(prior, "prior")
    z = draw(q, (num_samples,), generator=generator)
    rec = _evaluate(log_likelihood, z, 1, "log_likelihood")
    kl_exact = closed_form_kl(q, prior)
    if kl_exact is not None:
        kl = Estimate.exact_value(kl_exact)
        per_draw = rec - kl_exact
    else:
        log_ratio = q.log_prob(z) - log_prob_or_neg_inf(prior, z)
        kl = Estimate.from_samples(log_ratio, dim=0)
        per_draw = rec - log_ratio
    return ElboTerms(Estimate.from_samples(rec, dim=0), kl, Estimate.from_samples(per_draw, dim=0))


def iwae_bound(
    log_joint: LogDensity,
    q: D.Distribution,
    k: int,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Estimate:
    """log (1/k) sum_i exp(log p(x, z_i) - log q(z_i)) in nats, [batch], the mean of num_samples
    independent repeats.  k = 1 is the ELBO; the bound is >= the ELBO in expectation and tends to
    log p(x) as k grows.

    stderr: with num_samples >= 2, the spread of the repeats; with one repeat, the jackknife standard
    error of the log of the mean weight (prob.tails.log_mean_exp_variance; inf when k = 1).
    chunk_size bounds memory: the k draws are made and reduced chunk_size at a time (running logsumexp).
    """
    _check_count(k, "k", minimum=1)
    _check_count(num_samples, "num_samples", minimum=1)
    if chunk_size is not None:
        _check_count(chunk_size, "chunk_size", minimum=1)
    q = as_distribution(q, "q")
    step = k if chunk_size is None else min(chunk_size, k)
    s1 = None  # running log sum w, [num_samples, *batch]
    kept = []  # the log-weights of the first repeat, for its jackknife error (k values per example)
    for start in range(0, k, step):
        n = min(step, k - start)
        z = draw(q, (num_samples, n), generator=generator)
        lw = _evaluate(log_joint, z, 2, "log_joint") - q.log_prob(z)
        c1 = torch.logsumexp(lw, dim=1)
        s1 = c1 if s1 is None else torch.logaddexp(s1, c1)
        if num_samples == 1:
            kept.append(lw[0].detach())
    bound = s1 - math.log(k)  # [num_samples, *batch]
    if num_samples >= 2:
        stderr = bound.detach().std(0) / math.sqrt(num_samples)
    else:
        stderr = log_mean_exp_variance(torch.cat(kept), dim=0).sqrt().to(bound.dtype)
    return Estimate(bound.mean(0), stderr, k * num_samples, False)
