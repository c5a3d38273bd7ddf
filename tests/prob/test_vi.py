"""ELBO and IWAE against the exact evidence of random linear Gaussian models:
log p(x) = ELBO(q) + KL(q || p(z | x)) for any q, zero variance at the exact posterior, IWAE monotone in k."""

import pytest
import torch
import torch.distributions as D
from hypothesis import given, settings
from hypothesis import strategies as st

from lowerbound.errors import UserError
from lowerbound.prob import LinearGaussian, elbo, elbo_terms, iwae_bound, kl_divergence

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _problem(seed, d=2, D_=4, batch=3):
    g = _gen(seed)
    model = LinearGaussian.random(d, D_, noise_std=0.3 + torch.rand((), generator=g).item(), generator=g)
    _, x = model.sample(batch, generator=g)
    loc = torch.randn(batch, d, generator=g, dtype=F64)
    scale = 0.3 + torch.rand(batch, d, generator=g, dtype=F64)
    q = D.Independent(D.Normal(loc, scale), 1)
    return model, x, q, lambda z: model.log_joint(x, z)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(1, 5))
def test_evidence_is_elbo_plus_kl_to_the_posterior(seed, d, D_):
    model, x, q, log_joint = _problem(seed, d, D_)
    est = elbo(log_joint, q, num_samples=4000, generator=_gen(seed + 1))
    gap = kl_divergence(q, model.posterior(x))
    assert gap.exact and bool((gap.value >= 0).all())
    residual = model.log_evidence(x) - (est.value + gap.value)
    assert bool((residual.abs() <= 4.5 * est.stderr).all()), (residual, est.stderr)


def test_identity_holds_with_a_full_covariance_q_too():
    model, x, _, log_joint = _problem(3)
    A = torch.randn(3, 2, 2, generator=_gen(4), dtype=F64)
    q = D.MultivariateNormal(torch.zeros(3, 2, dtype=F64), covariance_matrix=A @ A.mT + 0.2 * torch.eye(2))
    est = elbo(log_joint, q, num_samples=4000, generator=_gen(5))
    residual = model.log_evidence(x) - est.value - kl_divergence(q, model.posterior(x)).value
    assert bool((residual.abs() <= 4.5 * est.stderr).all())


def test_every_sample_equals_the_evidence_at_the_exact_posterior():
    model, x, _, log_joint = _problem(6, d=3, D_=5, batch=4)
    est = elbo(log_joint, model.posterior(x), num_samples=64, generator=_gen(7))
    torch.testing.assert_close(est.value, model.log_evidence(x), rtol=0, atol=1e-10)
    assert bool((est.stderr < 1e-10).all())


def test_elbo_terms_split_the_elbo():
    model, x, q, log_joint = _problem(8)
    terms = elbo_terms(lambda z: model.likelihood(z).log_prob(x), q, model.prior(), num_samples=4000,
                       generator=_gen(9))
    assert terms.kl.exact  # Independent(Normal) || MultivariateNormal: a registered closed form
    torch.testing.assert_close(terms.kl.value, kl_divergence(q, model.prior()).value)
    torch.testing.assert_close(terms.elbo.value, terms.reconstruction.value - terms.kl.value)
    whole = elbo(log_joint, q, num_samples=4000, generator=_gen(10))
    diff = (terms.elbo.value - whole.value).abs()
    assert bool((diff <= 4.5 * torch.sqrt(terms.elbo.stderr**2 + whole.stderr**2)).all())


def test_elbo_terms_with_a_monte_carlo_kl():
    model, x, q, _ = _problem(11)
    components = D.Independent(D.Normal(torch.zeros(2, 2, dtype=F64), torch.ones(2, 2, dtype=F64)), 1)
    prior = D.MixtureSameFamily(D.Categorical(torch.ones(2, dtype=F64)), components)
    terms = elbo_terms(lambda z: model.likelihood(z).log_prob(x), q, prior, num_samples=3000,
                       generator=_gen(12))
    assert not terms.kl.exact
    truth = kl_divergence(q, model.prior()).value  # the mixture of two equal components is N(0, I)
    assert bool(((terms.kl.value - truth).abs() <= 4.5 * terms.kl.stderr).all())
    # the same draws give both terms: elbo = reconstruction - kl draw by draw, and it is the ELBO
    torch.testing.assert_close(terms.elbo.value, terms.reconstruction.value - terms.kl.value)
    exact = model.log_evidence(x) - kl_divergence(q, model.posterior(x)).value
    assert bool(((terms.elbo.value - exact).abs() <= 4.5 * terms.elbo.stderr).all())


def test_elbo_gradient_is_minus_the_gradient_of_the_kl_to_the_posterior():
    # log p(x) does not depend on q, so grad ELBO(q) = -grad KL(q || p(z | x)), the latter in closed form
    model, x, _, log_joint = _problem(13, batch=1)
    post = model.posterior(x)
    loc = (post.loc + 0.5).requires_grad_(True)
    log_scale = torch.full((1, 2), -0.5, dtype=F64, requires_grad=True)

    def q():
        return D.Independent(D.Normal(loc, log_scale.exp()), 1)

    est = elbo(log_joint, q(), num_samples=20000, generator=_gen(14))
    mc = torch.autograd.grad(est.value.sum(), (loc, log_scale))
    exact = torch.autograd.grad(-kl_divergence(q(), post).value.sum(), (loc, log_scale))
    for a, b in zip(mc, exact):
        torch.testing.assert_close(a, b, atol=0.05 * b.abs().max().item() + 0.02, rtol=0)


def test_iwae_is_monotone_in_k_on_average_and_tends_to_the_evidence():
    model, x, q, log_joint = _problem(15, batch=2)
    truth = model.log_evidence(x)
    means = []
    for k in (1, 4, 16, 64, 256):
        est = iwae_bound(log_joint, q, k, num_samples=200, generator=_gen(16 + k))
        means.append(est)
        assert bool((est.value <= truth + 4 * est.stderr).all())
    for a, b in zip(means, means[1:]):
        assert bool((b.value >= a.value - 3 * torch.sqrt(a.stderr**2 + b.stderr**2)).all())
    assert bool((means[-1].value - means[0].value > 0).all())
    big = iwae_bound(log_joint, q, 20000, generator=_gen(17), chunk_size=4096)
    assert bool(((big.value - truth).abs() < 0.05 * (truth - means[0].value).abs() + 4 * big.stderr).all())


def test_iwae_with_k_1_is_the_elbo_and_exact_at_the_posterior():
    model, x, q, log_joint = _problem(18)
    a = iwae_bound(log_joint, q, 1, num_samples=50, generator=_gen(19))
    b = elbo(log_joint, q, num_samples=50, generator=_gen(19))
    torch.testing.assert_close(a.value, b.value)
    exact = iwae_bound(log_joint, model.posterior(x), 32, generator=_gen(20))
    torch.testing.assert_close(exact.value, model.log_evidence(x), rtol=0, atol=1e-10)


def test_iwae_single_repeat_stderr_matches_the_spread_of_repeats():
    _, _, q, log_joint = _problem(21, batch=1)
    singles = [iwae_bound(log_joint, q, 100, generator=_gen(100 + i)) for i in range(80)]
    spread = torch.stack([s.value for s in singles]).std().item()
    claimed = torch.stack([s.stderr for s in singles]).median().item()
    assert 0.6 < claimed / spread < 1.6, (claimed, spread)


def test_iwae_chunks_agree_with_one_pass():
    _, _, q, log_joint = _problem(22)
    whole = iwae_bound(log_joint, q, 2000, generator=_gen(23))
    chunked = iwae_bound(log_joint, q, 2000, generator=_gen(24), chunk_size=300)
    assert chunked.num_samples == whole.num_samples == 2000
    tolerance = 4.5 * torch.hypot(whole.stderr, chunked.stderr)
    assert bool(((whole.value - chunked.value).abs() <= tolerance).all())


def test_bad_arguments_are_user_errors():
    model, x, q, log_joint = _problem(25)
    with pytest.raises(UserError, match="k must"):
        iwae_bound(log_joint, q, 0)
    with pytest.raises(UserError, match="chunk_size"):
        iwae_bound(log_joint, q, 5, chunk_size=0)
    with pytest.raises(UserError, match="leading axes"):
        elbo(lambda z: model.log_joint(x, z).sum(0), q, num_samples=5)


def test_elbo_of_an_unbatched_q_with_an_event_axis():
    """q with no batch axes (one x, z in R^d): log_joint's output keeps only the sample axis of z."""
    model = LinearGaussian.random(3, 4, noise_std=0.5, generator=_gen(30))
    _, x = model.sample(1, generator=_gen(31))
    x = x[0]  # [D], no batch
    est = elbo(lambda z: model.log_joint(x, z), model.posterior(x), num_samples=16, generator=_gen(32))
    assert est.value.shape == ()
    torch.testing.assert_close(est.value, model.log_evidence(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("k, chunk, repeats", [(5, 2, 1), (7, 3, 4), (6, 4, 2)])
def test_iwae_chunks_draw_exactly_k_samples(k, chunk, repeats):
    """k not a multiple of the chunk: the last chunk is short, so exactly k draws per repeat are made,
    and at the exact posterior (every weight p(x)) the bound is log p(x), chunked or not."""
    model, x, _, log_joint = _problem(26)
    seen = []

    def counting(z):
        seen.append(z.shape[1])
        return log_joint(z)

    post = model.posterior(x)
    chunked = iwae_bound(counting, post, k, num_samples=repeats, generator=_gen(27), chunk_size=chunk)
    assert sum(seen) == k and max(seen) <= chunk
    whole = iwae_bound(log_joint, post, k, num_samples=repeats, generator=_gen(28))
    torch.testing.assert_close(chunked.value, model.log_evidence(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.value, whole.value, rtol=0, atol=1e-10)
    assert chunked.num_samples == k * repeats
