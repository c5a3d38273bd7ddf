"""The latent-class model against its oracles: Bayes rule by enumeration, the ELBO identity, the
M-step as an argmax, and EM's monotone objective."""

import itertools
import math

import pytest
import torch

from lowerbound.prob import latent_class as lc


def random_model(c=3, d=4, k=3, seed=0, sharp=1.0) -> lc.LatentClass:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, generator=g, dtype=torch.float64)
    theta = sharp * torch.randn(c, d, k, generator=g, dtype=torch.float64)
    return lc.LatentClass(w.log_softmax(0), theta.log_softmax(-1))


def test_posterior_is_bayes_rule_by_enumeration():
    m = random_model()
    w, theta = m.log_weights.exp(), m.log_probs.exp()
    xs = torch.tensor(list(itertools.product(range(3), repeat=4)))  # all K^D = 81 configurations
    log_post, log_ev = m.posterior(xs)
    for i, x in enumerate(xs):
        joint = torch.tensor([w[c] * math.prod(theta[c, d, x[d]].item() for d in range(4))
                              for c in range(3)], dtype=torch.float64)
        torch.testing.assert_close(log_ev[i], joint.sum().log())
        torch.testing.assert_close(log_post[i].exp(), joint / joint.sum())
    # the evidence is a distribution over all configurations
    torch.testing.assert_close(torch.logsumexp(log_ev, 0), torch.zeros((), dtype=torch.float64))


def test_posterior_is_stable_far_below_1e300():
    # 2000 dimensions: every likelihood is around e^-2000, far below the smallest float64
    m = random_model(c=4, d=2000, k=5, seed=1)
    x = m.sample(3, torch.Generator().manual_seed(0))[0]
    log_post, log_ev = m.posterior(x)
    assert torch.isfinite(log_post).all() and torch.isfinite(log_ev).all() and (log_ev < -700).all()
    ll = m.log_likelihood(x) + m.log_weights
    # Bayes rule in ratios: log p(c|x) - log p(c'|x) = log p(x, c) - log p(x, c')
    torch.testing.assert_close(log_post - log_post[:, :1], ll - ll[:, :1])
    torch.testing.assert_close(log_post.exp().sum(1), torch.ones(3, dtype=torch.float64))


def test_elbo_identity_log_p_equals_elbo_plus_kl_to_posterior():
    m = random_model(seed=2)
    x = m.sample(50, torch.Generator().manual_seed(1))[0]
    log_post, log_ev = m.posterior(x)
    log_q = torch.randn(50, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    log_q = log_q.log_softmax(1)
    kl = (log_q.exp() * (log_q - log_post)).sum(1)
    torch.testing.assert_close(m.elbo(x, log_q) + kl, log_ev)
    assert (kl > 0).all()
    # with q the exact posterior, the ELBO is log p(x) (the E-step closes the gap)
    torch.testing.assert_close(m.elbo(x, log_post), log_ev)


def _nudge(t, dim, g):
    return (t + 0.05 * torch.randn(t.shape, generator=g, dtype=t.dtype)).log_softmax(dim)


def test_m_step_maximizes_the_elbo_at_fixed_q():
    truth = random_model(c=3, d=5, k=4, seed=3, sharp=2.0)
    x = truth.sample(200, torch.Generator().manual_seed(3))[0]
    log_q = random_model(c=3, d=5, k=4, seed=4).posterior(x)[0]
    for alpha in (0.0, 0.7):
        best = lc.m_step(x, log_q, 4, alpha, alpha)
        top = best.elbo(x, log_q).sum() + best.log_prior(alpha, alpha)
        g = torch.Generator().manual_seed(5)
        for _ in range(20):  # any other parameters, nearby, score lower
            other = lc.LatentClass(_nudge(best.log_weights, 0, g), _nudge(best.log_probs, -1, g))
            assert other.elbo(x, log_q).sum() + other.log_prior(alpha, alpha) < top


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_em_never_decreases_the_objective(alpha):
    truth = random_model(c=4, d=12, k=5, seed=6, sharp=2.0)
    x = truth.sample(300, torch.Generator().manual_seed(6))[0]
    init = lc.random_responsibilities(300, 4, torch.Generator().manual_seed(7))
    alpha_w = 1.0 if alpha > 0 else 0.0
    model, trace = lc.fit_em(x, init, 5, iterations=60, tol=0.0, alpha=alpha, alpha_weights=alpha_w)
    obj = torch.tensor(trace.objective)
    assert len(obj) == 60
    assert (obj.diff() >= -1e-10).all(), obj.diff().min()
    assert obj[-1] > obj[0] + 0.1  # and it does climb
    if alpha == 0.0:  # maximum likelihood: the ELBO itself rises at every half step
        e, m = torch.tensor(trace.elbo_e), torch.tensor(trace.elbo_m)
        assert (m >= e[: len(m)] - 1e-10).all() and (e[1:] >= m[: len(e) - 1] - 1e-10).all()
    # the ELBO recorded after an E-step is the exact mean log-likelihood of the model at that step
    assert lc.fit_em(x, model, 5, iterations=1)[1].elbo_e[0] == pytest.approx(
        model.log_prob(x).mean().item(), abs=1e-12)


def test_em_recovers_a_planted_model():
    truth = random_model(c=3, d=30, k=4, seed=8, sharp=3.0)
    g = torch.Generator().manual_seed(8)
    x, held = truth.sample(1500, g)[0], truth.sample(1000, g)[0]
    init = lc.random_responsibilities(1500, 3, torch.Generator().manual_seed(9))
    model, _ = lc.fit_em(x, init, 4, iterations=200, alpha=0.01, alpha_weights=1.0)
    gap = (truth.log_prob(held) - model.log_prob(held)).mean().item()  # ~ KL(truth || model)
    assert -0.05 < gap < 0.2


def test_sampling_matches_the_model():
    m = random_model(c=2, d=3, k=3, seed=10)
    x, z = m.sample(20000, torch.Generator().manual_seed(11))
    freq = torch.bincount(z, minlength=2).double() / 20000
    w = m.log_weights.exp()
    assert ((freq - w).abs() < 4 * (w * (1 - w) / 20000).sqrt()).all()
    marg = torch.einsum("c,cdk->dk", w, m.log_probs.exp())  # p(x_d = k)
    emp = torch.nn.functional.one_hot(x, 3).double().mean(0)
    assert ((emp - marg).abs() < 4 * (marg * (1 - marg) / 20000).sqrt() + 1e-9).all()


def test_marginal_pseudocounts_and_invariants():
    x = torch.tensor([[0, 1], [0, 2], [1, 2]])
    a = lc.marginal_pseudocounts(x, 3, 6.0)
    torch.testing.assert_close(a.sum(-1), torch.full((2,), 6.0, dtype=torch.float64))
    torch.testing.assert_close(a[0], 6.0 * torch.tensor([2.5, 1.5, 0.5], dtype=torch.float64) / 4.5)
    with pytest.raises(ValueError):
        lc.LatentClass(torch.zeros(2), torch.zeros(2, 3, 4))  # not normalized
    with pytest.raises(ValueError):
        lc.m_step(x, torch.zeros(3, 1), 3, alpha=-1.0)


def test_an_empty_component_without_pseudocounts_is_refused_clearly():
    x = torch.tensor([[0, 1], [1, 0]])
    log_q = torch.log(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # component 1 gets no examples
    with pytest.raises(ValueError, match="holds no examples"):
        lc.m_step(x, log_q, levels=2)
