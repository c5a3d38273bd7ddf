"""The Pareto k-hat of prob.tails against a reference computation of the same estimator, written here
from the papers' formulas in plain float64 Python loops: Zhang & Stephens 2009 (Technometrics 51), sec. 3,
with the grid and prior of their empirical-Bayes estimate, and the PSIS paper's shrinkage of k towards
1/2 as if by 10 more draws (Vehtari, Simpson, Gelman, Yao & Gabry 2024, JMLR 25, app. H).  The tolerance
is tight (1e-9 relative): a grid of one point fewer, another order statistic for the quartile, or another
prior constant moves k-hat by far more."""

import math

import numpy as np
import pytest
import torch

from lowerbound.prob.tails import PRIOR_DRAWS, gpd_shape, tail_length, tail_shape


def _zhang_stephens_k(x: list[float]) -> float:
    """k-hat (k > 0 for heavy tails) of exceedances x, sorted ascending, by the formulas of the papers."""
    n = len(x)
    m = 30 + math.floor(math.sqrt(n))  # the number of grid points
    x_quart = x[math.floor(n / 4 + 0.5) - 1]  # x_(floor(n/4 + 1/2)), 1-based: the first quartile
    thetas, logliks = [], []
    for j in range(1, m + 1):
        theta = 1.0 / x[-1] + (1.0 - math.sqrt(m / (j - 0.5))) / (3.0 * x_quart)
        k_zs = -sum(math.log1p(-theta * xi) for xi in x) / n  # Zhang & Stephens' sign: k < 0 heavy
        thetas.append(theta)
        logliks.append(n * (math.log(theta / k_zs) + k_zs - 1.0))  # profile log-likelihood l(theta)
    # w_j = 1 / sum_i exp(l_i - l_j), the posterior weight of grid point j
    weights = [1.0 / sum(math.exp(li - lj) for li in logliks) for lj in logliks]
    theta_hat = sum(w * t for w, t in zip(weights, thetas)) / sum(weights)
    k_hat = sum(math.log1p(-theta_hat * xi) for xi in x) / n
    return (n * k_hat + 10.0 * 0.5) / (n + 10.0)


@pytest.mark.parametrize("n, shape", [(20, 0.3), (95, 0.7), (37, -0.2)])
def test_gpd_shape_matches_the_reference_computation(n, shape):
    rng = np.random.default_rng(n)
    u = rng.uniform(size=n)
    x = np.sort((u ** -shape - 1.0) / shape)  # generalized Pareto draws of shape k, scale 1
    got = gpd_shape(torch.from_numpy(x)).item()
    assert got == pytest.approx(_zhang_stephens_k(x.tolist()), rel=1e-9, abs=1e-12)


def test_gpd_shape_fits_each_batch_column_on_its_own():
    rng = np.random.default_rng(5)
    cols = [np.sort(rng.pareto(a, size=40)) for a in (1.5, 3.0, 8.0)]
    got = gpd_shape(torch.from_numpy(np.stack(cols, 1)))
    want = torch.tensor([_zhang_stephens_k(c.tolist()) for c in cols], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_tail_shape_fits_the_largest_draws_over_the_next_one():
    rng = np.random.default_rng(11)
    draws = rng.standard_t(3, size=1000)
    m = tail_length(1000)
    top = np.sort(draws)[-(m + 1):]
    want = _zhang_stephens_k((top[1:] - top[0]).tolist())
    assert PRIOR_DRAWS == 10.0
    assert tail_shape(torch.from_numpy(draws)).item() == pytest.approx(want, rel=1e-9)
