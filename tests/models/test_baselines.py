"""Classical baselines against closed forms, hand computations, Monte Carlo and scikit-learn, plus the
fast rungs of the digits-bpd ladder (benchmarks.md).  The EM mixture's ladder rung is in
benchmarks/digits_baselines.py (it takes longer than a test should)."""

import math

import numpy as np
import pytest
import torch

from lowerbound.data import load
from lowerbound.errors import UserError
from lowerbound.models import registry
from lowerbound.prob.latent_class import LatentClass
from lowerbound.prob.units import to_signed

from ..coverage import assert_coverage

SHAPE = (1, 2, 3)  # D = 6


def fitted(name, options=None, levels=5, shape=SHAPE, train=None):
    model = registry.build(name, options or {}, levels, shape)
    if train is None:
        train = torch.randint(levels, (200, *shape), generator=torch.Generator().manual_seed(0))
    model.fit(train, None, progress=False)
    return model, train


def test_uniform_is_log_k_per_dimension():
    model, x = fitted("uniform", levels=7)
    b = model.bound(x)
    assert b.exact and b.estimator == "exact"
    torch.testing.assert_close(b.bits_per_dim(), torch.full((200,), math.log2(7)))
    s = model.sample(50, torch.Generator().manual_seed(1))
    assert s.shape == (50, *SHAPE) and s.dtype == torch.long and 0 <= s.min() and s.max() < 7


@pytest.mark.parametrize("smoothing", [1.0, 0.25])
def test_categorical_is_the_smoothed_empirical_cross_entropy(smoothing):
    model, train = fitted("categorical", {"smoothing": smoothing}, levels=4)
    test = torch.randint(4, (30, *SHAPE), generator=torch.Generator().manual_seed(2))
    tr, te = train.reshape(200, -1).numpy(), test.reshape(30, -1).numpy()
    expected = np.zeros(30)
    for d in range(6):  # by hand: (count + a) / (n + K a), per dimension
        p = (np.bincount(tr[:, d], minlength=4) + smoothing) / (200 + 4 * smoothing)
        expected -= np.log(p[te[:, d]])
    torch.testing.assert_close(model.bound(test).nats.double(), torch.from_numpy(expected), rtol=1e-5,
                               atol=1e-5)
    s = model.sample(4000, torch.Generator().manual_seed(3)).reshape(4000, -1)
    freq = (s[:, 0] == 2).double().mean().item()
    p = math.exp(model.log_probs[0, 2].item())
    assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 4000)


def test_categorical_mixture_bound_is_exact_log_likelihood_and_round_trips():
    model, train = fitted("categorical-mixture", {"components": 3, "strengths": [2.0], "restarts": 2,
                                                  "iterations": 30})
    x = train[:40]
    b = model.bound(x)
    lc = LatentClass(model.log_weights.double(), model.log_probs.double())
    # reconstruction + kl (q = exact posterior) equals -log p(x) computed by Bayes rule
    torch.testing.assert_close(b.nats.double(), -lc.log_prob(x.reshape(40, -1)), rtol=1e-5, atol=1e-4)
    assert set(b.terms) == {"reconstruction", "kl"} and (b.terms["kl"] >= -1e-6).all()
    again = registry.build("categorical-mixture", {"components": 3}, 5, SHAPE)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.bound(x).nats, b.nats)
    assert again.sample(7, torch.Generator().manual_seed(0)).shape == (7, *SHAPE)


def test_categorical_mixture_chooses_by_validation_and_beats_independence():
    truth = LatentClass(torch.tensor([0.5, 0.5]).log(),
                        torch.tensor([[0.9, 0.1], [0.1, 0.9]]).log()[:, None, :].repeat(1, 6, 1))
    g = torch.Generator().manual_seed(4)
    train, valid = truth.sample(400, g)[0].reshape(400, *SHAPE), truth.sample(100, g)[0].reshape(100, *SHAPE)
    model = registry.build("categorical-mixture", {"components": 2, "strengths": [0.5, 50.0]}, 2, SHAPE)
    info = model.fit(train, valid, progress=False)
    assert info["strength"] == 0.5 and len(info["selection_valid_bits_per_dim"]) == 6
    cat, _ = fitted("categorical", levels=2, train=train)
    assert model.bound(valid).nats.mean() < cat.bound(valid).nats.mean() - 1.0  # nats per example


def dequantized_gaussian():
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(500, 6, generator=g) @ torch.randn(6, 6, generator=g) * 1.5 + 5).round().clamp(0, 9)
    return fitted("gaussian", levels=10, train=x.long().reshape(500, *SHAPE))


def test_gaussian_fit_is_the_covariance_of_dequantized_data():
    model, train = dequantized_gaussian()
    y = to_signed(train.reshape(500, -1), 10).double().numpy()
    cov = np.cov(y.T, bias=True) + np.eye(6) * (2 / 9) ** 2 / 12  # var of U(-w/2, w/2) is w^2/12
    sigma = model.scale_tril.double() @ model.scale_tril.double().T
    torch.testing.assert_close(sigma, torch.from_numpy(cov), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.mean.double(), torch.from_numpy(y.mean(0)), rtol=1e-5, atol=1e-6)


def test_gaussian_dequantization_bound_against_direct_monte_carlo():
    model, train = dequantized_gaussian()
    x = train[:8]
    mc = model.bound(x, samples=4000, generator=torch.Generator().manual_seed(6))
    assert mc.estimator == "dequantization-s=4000" and not mc.exact
    # direct: -mean over u of log N(y + u) with torch.distributions, minus D log w
    w = 2 / 9
    dist = torch.distributions.MultivariateNormal(model.mean.double(), scale_tril=model.scale_tril.double())
    u = torch.rand(4000, 8, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64) - 0.5
    direct = -dist.log_prob(to_signed(x.reshape(8, -1), 10).double() + w * u)
    se = (direct.var(0) / 4000 + mc.variance).sqrt()
    assert ((mc.nats - (direct.mean(0) - 6 * math.log(w))).abs() < 4 * se).all()
    # the closed-form expectation over u lies within the Monte Carlo error
    exact = model.bound(x, estimator="analytic")
    assert ((mc.nats - exact.nats).abs() < 4 * mc.variance.sqrt()).all()
    # and the importance-weighted estimate is tighter (Jensen), on average
    iw = model.bound(x, estimator="importance", samples=64, generator=torch.Generator().manual_seed(8))
    assert iw.nats.mean() < exact.nats.mean()


def test_dequantization_variance_covers_the_analytic_value():
    """Per example, 8 draws of u each: the 95% interval from Bound.variance holds the closed-form
    expectation over u; pooled over 20 examples per interval (as eval pools), over 300 intervals."""
    model, train = dequantized_gaussian()
    x = train[:20].repeat(300, 1, 1, 1)
    b = model.bound(x, samples=8, generator=torch.Generator().manual_seed(9))
    exact = model.bound(train[:20], estimator="analytic").nats.mean()
    assert_coverage(b.nats.reshape(300, 20).mean(1), b.variance.reshape(300, 20).sum(1).sqrt() / 20, exact)


def test_gaussians_on_continuous_data_match_closed_forms_and_sklearn():
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    g = torch.Generator().manual_seed(9)
    x = torch.cat([torch.randn(300, 2, generator=g) - 3, torch.randn(300, 2, generator=g) * 0.5 + 2])
    single, _ = fitted("gaussian", levels=None, shape=(2,), train=x)
    b = single.bound(x)
    assert b.exact and set(b.terms) == {"nll"}
    dist = torch.distributions.MultivariateNormal(x.double().mean(0), torch.cov(x.double().T, correction=0))
    torch.testing.assert_close(b.nats.double(), -dist.log_prob(x.double()), rtol=1e-4, atol=1e-4)
    mix, _ = fitted("gaussian-mixture", {"components": 2}, levels=None, shape=(2,), train=x)
    with threadpool_limits(1):
        sk = GaussianMixture(2, covariance_type="full", reg_covar=1e-6, random_state=0)
        sk.fit(x.double().numpy())
    expected = -torch.from_numpy(sk.score_samples(x.double().numpy()))
    torch.testing.assert_close(mix.bound(x).nats.double(), expected, rtol=1e-4, atol=1e-4)
    again = registry.build("gaussian-mixture", {"components": 2}, None, (2,))
    again.load_state_dict(mix.state_dict())
    torch.testing.assert_close(again.bound(x).nats, mix.bound(x).nats)
    s = again.sample(2000, torch.Generator().manual_seed(10))
    assert s.shape == (2000, 2) and abs(s[:, 0].mean() - x[:, 0].mean()) < 0.2


def test_bad_input_gets_one_clear_sentence():
    with pytest.raises(UserError, match="needs discrete data"):
        registry.build("categorical", {}, None, (2,))
    with pytest.raises(UserError, match="smoothing"):
        registry.build("categorical", {"smoothing": 0}, 5, SHAPE)
    with pytest.raises(UserError, match="Unknown option"):
        registry.build("categorical-mixture", {"componentz": 3}, 5, SHAPE)
    model = registry.build("categorical", {}, 5, SHAPE)
    x = torch.zeros(3, *SHAPE, dtype=torch.long)
    with pytest.raises(UserError, match="not been fitted"):
        model.bound(x)
    model.fit(x, progress=False)
    with pytest.raises(UserError, match="levels 0..4"):
        model.bound(x + 5)
    with pytest.raises(UserError, match="integer levels"):
        model.bound(x.float())
    with pytest.raises(UserError, match="shape"):
        model.bound(torch.zeros(3, 6, dtype=torch.long))
    with pytest.raises(UserError, match="no estimator"):
        model.bound(x, estimator="iwae")


@pytest.fixture(scope="module")
def digits():
    return load("digits")


@pytest.mark.parametrize("name,expected", [("uniform", 4.087), ("categorical", 2.424)])
def test_digits_ladder_exact_rungs(digits, name, expected):
    model, _ = fitted(name, levels=digits.levels, shape=digits.shape, train=digits.train)
    assert model.bound(digits.test).bits_per_dim().mean().item() == pytest.approx(expected, abs=0.001)


def test_digits_ladder_gaussian(digits):
    model, _ = fitted("gaussian", levels=digits.levels, shape=digits.shape, train=digits.train)
    bpd = model.bound(digits.test, estimator="analytic").bits_per_dim().mean().item()
    assert bpd == pytest.approx(2.96, abs=0.015)  # measured 2.949; benchmarks.md says ~2.96


def test_digits_ladder_categorical_mixture(digits):
    # one prior strength, one restart, loose tolerance: a few seconds; the full default fit (validation
    # over strengths and restarts) is in benchmarks/digits_baselines.py and measures 2.19-2.20
    options = {"strengths": [16.0], "restarts": 1, "tol": 1e-2}
    model, _ = fitted("categorical-mixture", options, levels=digits.levels, shape=digits.shape,
                      train=digits.train)
    assert model.bound(digits.test).bits_per_dim().mean().item() < 2.21 + 0.01


def test_fit_limits_threads_only_while_fitting():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model, _ = fitted("categorical-mixture", {"components": 2, "strengths": [1.0], "restarts": 1,
                                                  "iterations": 3, "threads": 1})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
