"""adapters.from_flow against closed forms: a torch.distributions.MultivariateNormal read as a flow
gives -log P(x) of the dequantized model, the Gaussian mass of each level's bin (normal CDFs in 1-D,
Gauss-Legendre quadrature over the square in 2-D), in the limit of many importance samples; every k
gives an upper bound, and the bin-width term is -D log w."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm

from lowerbound.adapters import from_flow
from lowerbound.errors import UserError

K = 5  # bin width 0.5 on [-1, 1]


def mvn(mean, cov):
    return torch.distributions.MultivariateNormal(torch.tensor(mean, dtype=torch.float64),
                                                  torch.tensor(cov, dtype=torch.float64))


def score(model, x, k, estimator="iw", seed=0):
    return model.bound(x, estimator=estimator, samples=k, generator=torch.Generator().manual_seed(seed))


def assert_within_error(b, exact):
    """Each example's estimate within 4 of its own standard errors (delta method) of the exact value;
    the errors are small (k draws), so this is a tight test."""
    exact = torch.as_tensor(np.asarray(exact), dtype=torch.float64)
    stderr = b.variance.sqrt()
    assert float(stderr.max()) < 2e-2
    assert bool(((b.nats - exact).abs() <= 4 * stderr + 1e-6).all()), (b.nats, exact, stderr)


def test_1d_gaussian_gives_the_cdf_of_each_bin():
    mu, sigma = 0.2, 0.3
    model = from_flow(mvn([mu], [[sigma**2]]), levels=K, shape=(1,))
    x = torch.arange(K).reshape(K, 1)
    centre = -1 + 0.5 * np.arange(K)
    exact = -np.log(norm.cdf((centre + 0.25 - mu) / sigma) - norm.cdf((centre - 0.25 - mu) / sigma))
    b = score(model, x, 20000)
    assert b.estimator == "iw-k=20000"
    bin_width = torch.full((K,), -math.log(0.5), dtype=torch.float64)
    torch.testing.assert_close(b.terms["dequantization"], bin_width)
    assert_within_error(b, exact)
    # every k is an upper bound in expectation; k = 1 is looser by the gap the extras report
    small = score(model, x, 1, estimator="dequantization", seed=1)
    assert float(small.nats.mean()) > float(torch.tensor(exact).mean()) - 1e-2
    assert bool((b.extras["gap"] >= 0).all())


def test_2d_gaussian_matches_quadrature_over_each_square():
    mean, cov = [0.1, -0.3], [[0.25, 0.12], [0.12, 0.16]]
    model = from_flow(mvn(mean, cov), levels=K, shape=(2,))
    x = torch.tensor([[2, 1], [0, 0], [4, 2], [1, 3]])
    nodes, weights = np.polynomial.legendre.leggauss(40)
    density = multivariate_normal(mean, cov)
    exact = []
    for level in x.numpy():
        c = -1 + 0.5 * level
        u, v = np.meshgrid(c[0] + 0.25 * nodes, c[1] + 0.25 * nodes, indexing="ij")
        mass = 0.25 * 0.25 * (np.outer(weights, weights) * density.pdf(np.stack([u, v], -1))).sum()
        exact.append(-math.log(mass))
    b = score(model, x, 40000)
    assert_within_error(b, exact)


def test_images_layout_low_high_and_sampling():
    """A product of independent 1-D Gaussians on [0, 1] ("low"/"high": levels 0 and K-1 at 0 and 1)
    over [2, 2] images: the bound factorizes into the 1-D bins' masses."""
    d = 4
    dist = mvn([0.5] * d, (0.09 * np.eye(d)).tolist())
    model = from_flow(dist, levels=K, shape=(1, 2, 2), low=0.0, high=1.0)
    x = torch.tensor([[0, 1, 2, 4]]).reshape(1, 1, 2, 2)
    centre = 0.25 * x.flatten().numpy()
    exact = -np.log(norm.cdf((centre + 0.125 - 0.5) / 0.3) - norm.cdf((centre - 0.125 - 0.5) / 0.3)).sum()
    b = score(model, x, 40000)
    assert_within_error(b, [exact])
    s = model.sample(500, torch.Generator().manual_seed(0))
    assert s.shape == (500, 1, 2, 2) and s.dtype == torch.long and int(s.min()) >= 0 and int(s.max()) < K
    assert torch.equal(s, model.sample(500, torch.Generator().manual_seed(0)))
    assert abs(float(s.double().mean()) - 2.0) < 0.1  # the levels' mean is the mean's level


def test_bad_input_is_one_sentence():
    model = from_flow(mvn([0.0], [[1.0]]), levels=K, shape=(1,))
    with pytest.raises(UserError, match="integer levels"):
        model.bound(torch.tensor([[K]]))
    with pytest.raises(UserError, match="log_prob"):
        from_flow(object(), levels=K, shape=(1,))
    with pytest.raises(UserError, match="estimator"):
        model.bound(torch.tensor([[1]]), estimator="exact")


def test_zuko_flow_matches_quadrature_of_its_own_density():
    """A zuko flow (lazy: flow() is the distribution) with random weights: the adapted bound against
    Gauss-Legendre quadrature of exp(log_prob) over each square, the flow's own mass of each bin."""
    zuko = pytest.importorskip("zuko")
    torch.manual_seed(0)
    flow = zuko.flows.MAF(features=2, transforms=2, hidden_features=(16,)).double()
    model = from_flow(flow, levels=K, shape=(2,))
    x = torch.tensor([[2, 2], [1, 3], [3, 1]])
    nodes, weights = np.polynomial.legendre.leggauss(40)
    exact = []
    with torch.no_grad():
        for level in x.numpy():
            c = -1 + 0.5 * level
            u, v = np.meshgrid(c[0] + 0.25 * nodes, c[1] + 0.25 * nodes, indexing="ij")
            pdf = flow().log_prob(torch.tensor(np.stack([u, v], -1).reshape(-1, 2))).exp().numpy()
            exact.append(-math.log(0.25 * 0.25 * (np.outer(weights, weights).ravel() * pdf).sum()))
        b = score(model, x, 20000)
    assert_within_error(b, exact)
    assert model.sample(3, torch.Generator().manual_seed(0)).shape == (3, 2)
