"""Coverage of every Monte Carlo error bar in prob: over independent repeats the 95% interval holds the
exact value 95% of the time, within binomial error (tests/coverage.py); where the draws' tail is too
heavy for that, the estimate says so (stderr inf and a TailWarning) instead."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributions as D
from scipy import integrate

from lowerbound.prob import (
    LinearGaussian,
    cross_entropy,
    elbo,
    entropy,
    iwae_bound,
    kl_divergence,
    monte_carlo,
)
from lowerbound.prob.kl import TailWarning

from ..coverage import assert_coverage

F64 = torch.float64
R = 1000  # repeats, run as a batch of R independent estimates


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_monte_carlo_mean_covers_its_expectation():
    q = D.Normal(torch.zeros(R, dtype=F64), torch.ones(R, dtype=F64))
    est = monte_carlo(lambda z: torch.exp(0.5 * z), q, 400, generator=_gen(0))
    assert_coverage(est.value, est.stderr, math.exp(0.125))  # E[exp(z / 2)] = exp(1 / 8)


def test_monte_carlo_kl_of_a_light_tailed_pair_covers_the_closed_form():
    q = D.Normal(torch.zeros(R, dtype=F64), torch.full((R,), 1.5, dtype=F64))
    p = D.Normal(torch.ones(R, dtype=F64), torch.ones(R, dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TailWarning)
        est = kl_divergence(q, p, method="mc", num_samples=300, generator=_gen(1))
    assert_coverage(est.value, est.stderr, kl_divergence(q, p).value[0])
    assert est.tail_k is not None and torch.isinf(est.stderr).double().mean() < 0.03  # rarely refused


def test_monte_carlo_entropy_and_cross_entropy_cover_their_closed_forms():
    q = D.Normal(torch.zeros(R, dtype=F64), torch.full((R,), 0.7, dtype=F64))
    p = D.Laplace(torch.full((R,), 0.5, dtype=F64), torch.ones(R, dtype=F64))
    h = entropy(q, method="mc", num_samples=300, generator=_gen(7))
    assert_coverage(h.value, h.stderr, entropy(q).value[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TailWarning)
        ce = cross_entropy(q, p, method="mc", num_samples=300, generator=_gen(8))
    assert_coverage(ce.value, ce.stderr, cross_entropy(q, p).value[0])


def test_heavy_tailed_kl_warns_instead_of_a_confident_interval():
    """StudentT(5) || Normal: the plain interval holds the truth about 80% of the time at n = 200; the
    intervals reported (stderr inf where the tail is flagged) must hold it 95% of the time."""
    t5, normal = D.StudentT(5.0), D.Normal(0.0, 1.0)

    def integrand(z):
        lq = t5.log_prob(torch.tensor(z, dtype=F64))
        return float(lq.exp() * (lq - normal.log_prob(torch.tensor(z, dtype=F64))))

    truth = integrate.quad(integrand, -np.inf, np.inf, limit=200)[0]
    q, p = D.StudentT(torch.full((R,), 5.0, dtype=F64)), D.Normal(torch.zeros(R, dtype=F64), 1.0)
    torch.manual_seed(2)
    with pytest.warns(TailWarning, match="heavy tail"):
        est = kl_divergence(q, p, method="mc", num_samples=200)
    assert torch.isinf(est.stderr).double().mean() > 0.8
    assert_coverage(est.value, est.stderr, truth)


def test_iwae_jackknife_error_covers_the_expected_bound():
    """The jackknife stderr of one IWAE-50 estimate against E[IWAE-50] from 4000 repeats (a q 1.2 times
    wider than the posterior and shifted by 0.1)."""
    g = _gen(3)
    model = LinearGaussian.random(latent_dim=2, data_dim=5, generator=g)
    _, x = model.sample(4)
    post = model.posterior(x)
    scale = post.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    q = D.Independent(D.Normal(post.loc + 0.1, scale * 1.2), 1)
    big = iwae_bound(lambda z: model.log_joint(x, z), q, 50, num_samples=4000, generator=_gen(4))
    ests = [iwae_bound(lambda z: model.log_joint(x, z), q, 50, generator=g) for _ in range(250)]
    values = torch.stack([e.value for e in ests]).flatten()
    stderrs = torch.stack([e.stderr for e in ests]).flatten()
    assert_coverage(values, stderrs, big.value.repeat(250))


def test_elbo_error_covers_the_closed_form_elbo():
    g = _gen(5)
    model = LinearGaussian.random(latent_dim=2, data_dim=5, generator=g)
    _, x = model.sample(1)
    post = model.posterior(x)
    q = D.MultivariateNormal(post.loc.expand(R, -1) + 0.3, post.covariance_matrix.expand(R, -1, -1) * 1.5)
    est = elbo(lambda z: model.log_joint(x, z), q, num_samples=100, generator=g)
    exact = model.log_evidence(x) - kl_divergence(q, model.posterior(x)).value
    assert_coverage(est.value, est.stderr, exact)
