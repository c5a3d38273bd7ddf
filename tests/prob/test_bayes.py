"""Bayes rule against enumeration (exact decimal arithmetic where floats would underflow), and the
Normal-Normal conjugate case against the marginal Gaussian it implies."""

import math
from decimal import Decimal, getcontext

import pytest
import torch
import torch.distributions as D
from hypothesis import given, settings
from hypothesis import strategies as st

from lowerbound.errors import UserError
from lowerbound.prob import LinearGaussian, bayes_rule, normal_normal_posterior

F64 = torch.float64


def _enumerate(prior, log_lik):
    """Posterior and log evidence by direct enumeration in 60-digit decimals (no underflow)."""
    getcontext().prec = 60
    joint = [Decimal(p) * Decimal(ll).exp() for p, ll in zip(prior, log_lik)]
    evidence = sum(joint)
    return [float((j / evidence).ln()) if j > 0 else -math.inf for j in joint], float(evidence.ln())


def test_matches_enumeration_at_ordinary_scale():
    prior = [0.2, 0.5, 0.3]
    lik = [0.9, 0.1, 0.4]
    post, ev = bayes_rule(torch.tensor(prior, dtype=F64).log(), torch.tensor(lik, dtype=F64).log())
    evidence = sum(p * l for p, l in zip(prior, lik))
    expected = torch.tensor([p * l / evidence for p, l in zip(prior, lik)], dtype=F64)
    torch.testing.assert_close(post.exp(), expected)
    assert ev.item() == pytest.approx(math.log(evidence))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6).flatmap(
        lambda w: st.tuples(st.just(w), st.lists(st.floats(-1e5, -690.0), min_size=len(w), max_size=len(w)))
    )
)
def test_stable_for_likelihoods_of_1e_300_and_below(case):
    # log(1e-300) = -690.8: every likelihood here is below 1e-300, most far below (down to e^-100000)
    weights, log_lik = case
    prior = [w / sum(weights) for w in weights]
    post, ev = bayes_rule(torch.tensor(prior, dtype=F64).log(), torch.tensor(log_lik, dtype=F64))
    exp_post, exp_ev = _enumerate(prior, log_lik)
    assert bool(torch.isfinite(ev)) and ev.item() == pytest.approx(exp_ev, rel=1e-12, abs=1e-9)
    torch.testing.assert_close(post, torch.tensor(exp_post, dtype=F64), rtol=1e-9, atol=1e-9)
    assert post.exp().sum().item() == pytest.approx(1.0)


def test_batches_broadcast_and_zero_prior_stays_zero():
    log_prior = torch.tensor([0.5, 0.5, 0.0], dtype=F64).log()  # the third hypothesis is impossible
    log_lik = torch.tensor([[-800.0, -801.0, 0.0], [-2.0, -1.0, -3.0]], dtype=F64)
    post, ev = bayes_rule(log_prior, log_lik)
    assert post.shape == (2, 3) and ev.shape == (2,)
    assert bool(torch.isneginf(post[:, 2]).all())
    torch.testing.assert_close(post.exp().sum(-1), torch.ones(2, dtype=F64))
    e = math.e
    assert post[0, 0].exp().item() == pytest.approx(e / (e + 1))
    post_t, ev_t = bayes_rule(log_prior.unsqueeze(-1), log_lik.T, dim=0)  # the same along another axis
    torch.testing.assert_close(post_t, post.T)
    torch.testing.assert_close(ev_t, ev)


@pytest.mark.parametrize(
    "log_prior, log_lik",
    [
        ([0.0, -math.inf], [-math.inf, 0.0]),  # every hypothesis has probability 0
        ([math.nan, 0.0], [0.0, 0.0]),
        ([0.0, 0.0], [math.inf, 0.0]),
    ],
)
def test_bad_input_is_a_user_error(log_prior, log_lik):
    with pytest.raises(UserError):
        bayes_rule(torch.tensor(log_prior, dtype=F64), torch.tensor(log_lik, dtype=F64))


@settings(max_examples=15, deadline=None)
@given(st.floats(-3, 3), st.floats(0.2, 3), st.floats(0.1, 2), st.integers(1, 6), st.integers(0, 1000))
def test_normal_normal_against_the_marginal_gaussian(m0, s0, s, n, seed):
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2 + 1
    post, ev = normal_normal_posterior(m0, s0, s, x)
    # the same model as a linear Gaussian: x = m0 + s0 z + noise, z ~ N(0, 1), mu = m0 + s0 z
    ref = LinearGaussian(torch.full((n, 1), s0, dtype=F64), torch.full((n,), m0, dtype=F64), s)
    assert ev.item() == pytest.approx(ref.log_evidence(x).item(), rel=1e-9, abs=1e-9)
    z_post = ref.posterior(x)
    assert post.loc.item() == pytest.approx(m0 + s0 * z_post.loc.item(), rel=1e-9, abs=1e-9)
    assert post.scale.item() == pytest.approx(s0 * z_post.stddev.item(), rel=1e-9)


def test_normal_normal_batches_along_dim():
    x = torch.tensor([[0.1, 0.5, -0.2], [2.0, 2.5, 1.5]], dtype=F64)
    post, ev = normal_normal_posterior(0.0, 1.0, 0.5, x.T, dim=0)
    assert post.loc.shape == (2,) and ev.shape == (2,)
    for i in range(2):
        p_i, e_i = normal_normal_posterior(0.0, 1.0, 0.5, x[i])
        assert post.loc[i].item() == pytest.approx(p_i.loc.item())
        assert ev[i].item() == pytest.approx(e_i.item())
    assert isinstance(post, D.Normal)
    with pytest.raises(UserError, match="positive"):
        normal_normal_posterior(0.0, -1.0, 0.5, x)


def test_normal_normal_evidence_with_a_noise_std_per_batch_element():
    """Review finding: a [B] noise_std must pair with the batch axis, not the observation axis."""
    x = torch.tensor([[0.3], [1.5], [-2.0], [0.0]], dtype=torch.float64)
    s = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    _, log_evidence = normal_normal_posterior(0.0, 1.0, s, x)
    exact = D.Normal(0.0, (1 + s**2).sqrt()).log_prob(x[:, 0])  # x ~ N(0, 1 + s^2) marginally
    torch.testing.assert_close(log_evidence, exact)
