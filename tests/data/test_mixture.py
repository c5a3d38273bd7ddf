"""mixture:<d>: log_prob against torch's MixtureSameFamily and scipy, normalisation by quadrature in
2-D, the sampler against the parameters, the entropy against an independent Monte Carlo estimate."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from lowerbound.data import load
from lowerbound.data.mixture import random_mixture
from lowerbound.errors import UserError


def test_log_prob_matches_torch_and_scipy():
    truth = random_mixture(3, components=4, seed=5)
    x = truth.sample(200, torch.Generator().manual_seed(0))
    ours = truth.log_prob(x)
    assert torch.allclose(ours, truth.distribution.log_prob(x), atol=1e-10)
    covs = (truth.scale_tril @ truth.scale_tril.transpose(1, 2)).numpy()
    per = np.stack([multivariate_normal(truth.means[k].numpy(), covs[k]).logpdf(x.numpy())
                    for k in range(4)])
    ref = logsumexp(per + np.log(truth.weights.numpy())[:, None], axis=0)
    assert np.allclose(ours.numpy(), ref, atol=1e-10)


def test_two_dim_density_integrates_to_one():
    truth = random_mixture(2, components=3, seed=1)
    lo = (truth.means.min(0).values - 6).tolist()
    hi = (truth.means.max(0).values + 6).tolist()
    h = 0.04
    xs = [torch.arange(a + h / 2, b, h, dtype=torch.float64) for a, b in zip(lo, hi)]
    gx, gy = torch.meshgrid(*xs, indexing="ij")
    mass = truth.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().sum() * h * h
    assert mass.item() == pytest.approx(1.0, abs=1e-6)


def test_sampler_mean_and_covariance_match_parameters():
    truth = random_mixture(2, components=3, seed=2)
    x = truth.sample(40000, torch.Generator().manual_seed(1))
    w, mu, L = truth.weights, truth.means, truth.scale_tril
    mean = (w[:, None] * mu).sum(0)
    second = (w[:, None, None] * (L @ L.transpose(1, 2) + mu[:, :, None] * mu[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    se = (torch.diagonal(cov) / len(x)).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se).all()
    assert torch.allclose(torch.cov(x.T), cov, rtol=0.05, atol=0.05)


def test_entropy_against_independent_monte_carlo():
    truth = random_mixture(4, components=5, seed=3)
    truth.mc_samples = 2**14
    h = truth.entropy()
    other = truth.entropy_mc(2**14, torch.Generator().manual_seed(99))
    assert not h.exact and h.num_samples == 2**14
    gap = abs(h.item() - other.item())
    assert gap < 4 * math.sqrt(h.stderr.item() ** 2 + other.stderr.item() ** 2)
    random_mixture.cache_clear()  # the truth was altered above


def test_load_is_seeded_and_sized():
    a = load("mixture:5", n_train=100, n_test=50, components=3)
    b = load("mixture:5", n_train=100, n_test=50, components=3)
    c = load("mixture:5", n_train=100, n_test=50, components=3, seed=1)
    assert a.shape == (5,) and a.train.shape == (100, 5) and a.levels is None
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert not torch.allclose(a.truth.means, c.truth.means)
    assert torch.isfinite(a.truth.log_prob(a.test)).all()


@pytest.mark.parametrize("name", ["mixture", "mixture:0", "mixture:x", "mixture:99999"])
def test_bad_dimension(name):
    with pytest.raises(UserError, match="mixture:<d>"):
        load(name)


def test_bad_options():
    with pytest.raises(UserError, match="at least one component"):
        load("mixture:2", components=0)
    with pytest.raises(UserError, match="mixture.colour"):
        load("mixture:2", colour=3)
