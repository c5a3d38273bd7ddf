"""Entropy and cross-entropy against closed forms, direct sums and numerical integration, and the split
KL(q || p) = H(q, p) - H(q)."""

import math

import pytest
import torch
import torch.distributions as D
from scipy import integrate

from lowerbound.errors import UserError
from lowerbound.prob import cross_entropy, entropy, kl_divergence

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _mixture():
    return D.MixtureSameFamily(
        D.Categorical(torch.tensor([0.4, 0.6], dtype=F64)),
        D.Normal(torch.tensor([-2.0, 1.0], dtype=F64), torch.tensor([0.7, 1.2], dtype=F64)),
    )


def test_discrete_entropy_and_cross_entropy_are_direct_sums():
    q = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]], dtype=F64)
    p = torch.tensor([[0.3, 0.3, 0.4], [0.2, 0.7, 0.1]], dtype=F64)
    h = entropy(q)
    assert h.exact
    plogp = torch.where(q > 0, q * q.log(), torch.zeros_like(q))
    torch.testing.assert_close(h.value, -plogp.sum(-1))
    torch.testing.assert_close(cross_entropy(q, p).value, -(q * p.log()).sum(-1))
    assert cross_entropy(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).value.item() == math.inf


def test_gaussian_entropy_closed_form_and_monte_carlo():
    q = D.Normal(torch.tensor(0.5, dtype=F64), torch.tensor(2.0, dtype=F64))
    assert entropy(q).value.item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 4.0))
    mc = entropy(q, method="mc", num_samples=20000, generator=_gen())
    assert abs(mc.value.item() - entropy(q).value.item()) < 4 * mc.stderr.item()


def test_mixture_entropy_by_numerical_integration():
    mix = _mixture()

    def integrand(z):
        lq = mix.log_prob(torch.tensor(z, dtype=F64))
        return float(-lq.exp() * lq)

    truth, _ = integrate.quad(integrand, -20, 20, limit=200)
    est = entropy(mix, generator=_gen(1))
    assert not est.exact
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()


def test_kl_is_cross_entropy_minus_entropy_closed_form():
    loc = torch.randn(3, 2, generator=_gen(2), dtype=F64)
    q = D.Independent(D.Normal(loc, torch.ones(3, 2, dtype=F64)), 1)
    p = D.MultivariateNormal(torch.zeros(2, dtype=F64), torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=F64))
    ce, h, kl = cross_entropy(q, p), entropy(q), kl_divergence(q, p)
    assert ce.exact and h.exact and kl.exact
    torch.testing.assert_close(kl.value, ce.value - h.value)
    # and the cross-entropy itself against Monte Carlo of -log p
    mc = cross_entropy(q, p, method="mc", num_samples=20000, generator=_gen(3))
    assert bool(((mc.value - ce.value).abs() < 4 * mc.stderr).all())


def test_kl_is_cross_entropy_minus_entropy_on_the_same_draws():
    mix, p = _mixture(), D.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64))
    ce = cross_entropy(mix, p, num_samples=500, generator=_gen(4))
    h = entropy(mix, num_samples=500, generator=_gen(4))
    kl = kl_divergence(mix, p, num_samples=500, generator=_gen(4))
    assert kl.value.item() == pytest.approx(ce.value.item() - h.value.item(), rel=1e-12)


def test_bad_method_is_a_user_error():
    with pytest.raises(UserError, match="method"):
        entropy(D.Normal(0.0, 1.0), method="exact")
    with pytest.raises(UserError, match="closed-form entropy"):
        entropy(_mixture(), method="closed")
