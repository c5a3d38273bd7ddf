"""prob.tails against its oracles: the Pareto k-hat of draws from generalized Pareto distributions of
known shape, bounded and flat tails, and the jackknife variance of a log-mean-exp recomputed by hand."""

import math

import numpy as np
import pytest
import torch

from lowerbound.prob.tails import PRIOR_DRAWS, log_mean_exp_variance, tail_length, tail_shape


@pytest.mark.parametrize("k", [0.2, 0.5, 0.9])
def test_k_hat_finds_the_shape_of_a_generalized_pareto_tail(k):
    """u^-k - 1 is GPD(k, 1); the fit sees the tail's M draws, shrunk towards 1/2 as by 10 more."""
    u = torch.rand(2000, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k_hat = tail_shape(u.pow(-k) - 1)
    m = tail_length(2000)
    want = (m * k + PRIOR_DRAWS * 0.5) / (m + PRIOR_DRAWS)
    assert abs(k_hat.mean().item() - want) < 0.04, (k_hat.mean().item(), want)
    assert k_hat.std().item() < 0.2


def test_bounded_flat_and_infinite_tails():
    u = torch.rand(1000, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert (tail_shape(u) < 0).all()  # a uniform's tail is bounded: k = -1
    assert tail_shape(torch.ones(1000, 2)).eq(-math.inf).all()
    with_inf = torch.cat([u[:, :1], torch.full((1, 1), math.inf, dtype=torch.float64)])
    assert tail_shape(with_inf).eq(math.inf).all()
    assert torch.isnan(tail_shape(torch.randn(5))).all()  # too few draws to say


def test_jackknife_variance_of_a_log_mean_exp_by_hand():
    lw = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    w = np.exp(lw.numpy())
    k = w.shape[0]
    loo = np.log((w.sum(0) - w) / (k - 1))
    want = (k - 1) / k * ((loo - loo.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(log_mean_exp_variance(lw).numpy(), want, rtol=1e-10)
    assert torch.isinf(log_mean_exp_variance(torch.tensor([[0.0], [-1e4]], dtype=torch.float64))).all()
    assert torch.isinf(log_mean_exp_variance(lw[:1])).all()
