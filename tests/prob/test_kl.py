"""KL divergence against its oracles: Monte Carlo for closed forms, direct sums for discrete KL,
numerical integration where no closed form exists, and the properties KL >= 0, KL(p || p) = 0."""

import math

import numpy as np
import pytest
import torch
import torch.distributions as D
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from lowerbound.errors import UserError
from lowerbound.prob import cross_entropy, kl_divergence
from lowerbound.prob.kl import DEFAULT_NUM_SAMPLES, log_prob_or_neg_inf

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _random_mvn(d, g, batch=()):
    A = torch.randn(*batch, d, d, generator=g, dtype=F64)
    cov = A @ A.transpose(-1, -2) + 0.5 * torch.eye(d, dtype=F64)
    return D.MultivariateNormal(torch.randn(*batch, d, generator=g, dtype=F64), covariance_matrix=cov)


def _random_diag(d, g, batch=()):
    loc = torch.randn(*batch, d, generator=g, dtype=F64)
    scale = 0.5 + torch.rand(*batch, d, generator=g, dtype=F64)
    return D.Independent(D.Normal(loc, scale), 1)


def _assert_within(closed, mc, k=4.0):
    gap = (closed.value - mc.value).abs()
    assert bool((gap <= k * mc.stderr).all()), f"closed {closed.value} vs mc {mc.value} +- {mc.stderr}"


@pytest.mark.parametrize("direction", ["diag||mvn", "mvn||diag"])
def test_registered_gaussian_pairs_match_monte_carlo(direction):
    g = _gen(1)
    diag, mvn = _random_diag(3, g, (4,)), _random_mvn(3, g, (4,))
    q, p = (diag, mvn) if direction == "diag||mvn" else (mvn, diag)
    closed = kl_divergence(q, p)
    assert closed.exact and closed.value.shape == (4,)
    mc = kl_divergence(q, p, method="mc", num_samples=20000, generator=_gen(2))
    assert not mc.exact and mc.num_samples == 20000
    _assert_within(closed, mc)


def _gaussian_kl_by_hand(m0, s0, m1, s1):
    """KL(N(m0, S0) || N(m1, S1)) from Rasmussen & Williams (2006), eq. A.23, in numpy float64:
    0.5 (log|S1| - log|S0| + tr(S1^-1 S0) + (m1 - m0)^T S1^-1 (m1 - m0) - d)."""
    m0, s0, m1, s1 = (np.asarray(a, dtype=np.float64) for a in (m0, s0, m1, s1))
    inv = np.linalg.inv(s1)
    diff = m1 - m0
    logdet = np.linalg.slogdet(s1)[1] - np.linalg.slogdet(s0)[1]
    return 0.5 * (logdet + np.trace(inv @ s0) + diff @ inv @ diff - len(m0))


def test_registered_pairs_are_the_textbook_gaussian_kl():
    g = _gen(3)
    diag, mvn = _random_diag(4, g), _random_mvn(4, g)
    m_d, cov_d = diag.base_dist.loc.numpy(), np.diag(diag.base_dist.scale.numpy() ** 2)
    m_f, cov_f = mvn.loc.numpy(), mvn.covariance_matrix.numpy()
    want = _gaussian_kl_by_hand(m_d, cov_d, m_f, cov_f)
    assert kl_divergence(diag, mvn).value.item() == pytest.approx(want, rel=1e-10)
    want = _gaussian_kl_by_hand(m_f, cov_f, m_d, cov_d)
    assert kl_divergence(mvn, diag).value.item() == pytest.approx(want, rel=1e-10)


def test_torch_closed_forms_match_monte_carlo():
    q = D.Normal(torch.tensor([0.0, 1.0], dtype=F64), torch.tensor([1.0, 0.3], dtype=F64))
    p = D.Laplace(torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([2.0, 1.0], dtype=F64))
    _assert_within(kl_divergence(q, p), kl_divergence(q, p, method="mc", num_samples=20000, generator=_gen()))


def test_discrete_kl_is_the_direct_sum():
    g = _gen(4)
    q = torch.softmax(torch.randn(5, 7, generator=g, dtype=F64), -1)
    p = torch.softmax(torch.randn(5, 7, generator=g, dtype=F64), -1)
    direct = (q * (q.log() - p.log())).sum(-1)
    est = kl_divergence(q, p)
    assert est.exact
    torch.testing.assert_close(est.value, direct)


def test_gaussian_mixture_against_normal_by_numerical_integration():
    mix = D.MixtureSameFamily(
        D.Categorical(torch.tensor([0.3, 0.7], dtype=F64)),
        D.Normal(torch.tensor([-1.0, 2.0], dtype=F64), torch.tensor([0.5, 1.0], dtype=F64)),
    )
    p = D.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(2.0, dtype=F64))

    def integrand(z):
        t = torch.tensor(z, dtype=F64)
        lq = mix.log_prob(t)
        return float(lq.exp() * (lq - p.log_prob(t)))

    truth, _ = integrate.quad(integrand, -20, 20, limit=200)
    est = kl_divergence(mix, p, generator=_gen(5))  # no closed form: Monte Carlo by default
    assert not est.exact and est.num_samples == DEFAULT_NUM_SAMPLES
    assert abs(est.value.item() - truth) <= 4 * est.stderr.item()


def test_self_kl_is_zero_and_kl_is_asymmetric():
    a = D.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    b = D.Normal(torch.tensor(1.0, dtype=F64), torch.tensor(2.0, dtype=F64))
    assert kl_divergence(a, a).value.item() == 0.0
    ab, ba = kl_divergence(a, b).value.item(), kl_divergence(b, a).value.item()
    # closed forms: log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2
    assert ab == pytest.approx(math.log(2.0) + 2.0 / 8.0 - 0.5)
    assert ba == pytest.approx(-math.log(2.0) + 5.0 / 2.0 - 0.5)
    assert ab != pytest.approx(ba)
    probs = torch.tensor([0.0, 0.25, 0.75], dtype=F64)  # a zero cell: supports still match
    assert kl_divergence(probs, probs).value.item() == 0.0


def test_infinite_where_q_has_mass_and_p_has_none():
    assert kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).value.item() == math.inf
    assert kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])).value.item() == pytest.approx(
        math.log(2.0)
    )
    q, p = D.Normal(0.0, 1.0), D.Uniform(-1.0, 1.0)
    assert kl_divergence(q, p).value.item() == math.inf
    mc = kl_divergence(q, p, method="mc", num_samples=100, generator=_gen())
    assert mc.value.item() == math.inf and mc.stderr.item() == 0.0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=2, max_size=6).flatmap(
        lambda a: st.tuples(st.just(a), st.lists(st.floats(-5, 5), min_size=len(a), max_size=len(a)))
    )
)
def test_kl_nonnegative_and_zero_only_at_equality(logits):
    q = torch.softmax(torch.tensor(logits[0], dtype=F64), -1)
    p = torch.softmax(torch.tensor(logits[1], dtype=F64), -1)
    kl = kl_divergence(q, p).value.item()
    assert kl >= -1e-12
    if kl < 1e-14:
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0)


@settings(max_examples=20, deadline=None)
@given(st.floats(-3, 3), st.floats(0.2, 3), st.floats(-3, 3), st.floats(0.2, 3))
def test_gaussian_kl_nonnegative(m1, s1, m2, s2):
    q = D.Independent(D.Normal(torch.tensor([m1, m2], dtype=F64), torch.tensor([s1, s2], dtype=F64)), 1)
    p = D.MultivariateNormal(torch.zeros(2, dtype=F64), torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=F64))
    assert kl_divergence(q, p).value.item() >= -1e-12


def test_generator_makes_monte_carlo_reproducible():
    components = D.Normal(torch.tensor([-1.0, 1.0]), torch.ones(2))
    mix = D.MixtureSameFamily(D.Categorical(torch.ones(2)), components)
    a = kl_divergence(mix, D.Normal(0.0, 1.0), num_samples=50, generator=_gen(9))
    b = kl_divergence(mix, D.Normal(0.0, 1.0), num_samples=50, generator=_gen(9))
    assert a.value.item() == b.value.item()


@pytest.mark.parametrize(
    "q, p, kwargs",
    [
        (torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]), {}),
        (torch.tensor([-0.5, 1.5]), torch.tensor([0.5, 0.5]), {}),
        ("normal", D.Normal(0.0, 1.0), {}),
        (D.Normal(0.0, 1.0), D.Normal(0.0, 1.0), {"method": "exact"}),
        (D.Normal(0.0, 1.0), D.Normal(0.0, 1.0), {"method": "mc", "num_samples": 1}),
    ],
)
def test_bad_input_is_one_user_error(q, p, kwargs):
    with pytest.raises(UserError) as err:
        kl_divergence(q, p, **kwargs)
    assert str(err.value).endswith(".")


def test_closed_method_refuses_when_no_closed_form():
    mix = D.MixtureSameFamily(D.Categorical(torch.ones(2)), D.Normal(torch.zeros(2), torch.ones(2)))
    with pytest.raises(UserError, match="no closed-form KL"):
        kl_divergence(mix, D.Normal(0.0, 1.0), method="closed")


@pytest.mark.parametrize("q, p", [
    (D.Categorical(probs=torch.tensor([0.5, 0.5])), D.Categorical(probs=torch.tensor([1.0, 0.0]))),
    (D.Bernoulli(torch.tensor(0.5)), D.Bernoulli(torch.tensor(0.0))),
    (D.Independent(D.Bernoulli(torch.tensor([0.5, 0.5])), 1),
     D.Independent(D.Bernoulli(torch.tensor([0.5, 1.0])), 1)),
])
def test_monte_carlo_kl_is_infinite_where_p_has_zero_mass(q, p):
    """torch clamps probabilities inside log_prob; a draw of probability exactly 0 must still give +inf."""
    g = torch.Generator().manual_seed(0)
    kl = kl_divergence(q, p, method="mc", num_samples=200, generator=g)
    ce = cross_entropy(q, p, method="mc", num_samples=200, generator=torch.Generator().manual_seed(0))
    assert torch.isposinf(kl.value).all() and (kl.stderr == 0).all()
    assert torch.isposinf(ce.value).all() and (ce.stderr == 0).all()


@pytest.mark.parametrize("probs", [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
def test_zero_mass_is_found_in_every_category(probs):
    """log p(z) is log probs[z] exactly, -inf where the probability is 0, whichever category that is."""
    p = torch.tensor(probs, dtype=F64)
    got = log_prob_or_neg_inf(D.Categorical(probs=p), torch.arange(3))
    torch.testing.assert_close(got, p.log())


def test_monte_carlo_kl_is_infinite_where_the_first_category_has_no_mass():
    q, p = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    kl = kl_divergence(q, p, method="mc", num_samples=200, generator=_gen())
    assert kl.value.item() == math.inf and kl.stderr.item() == 0.0
    assert kl_divergence(p, q, method="mc", num_samples=200, generator=_gen()).value.item() == math.inf
