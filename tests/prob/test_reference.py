"""LinearGaussian's exact evidence and posterior against numerical integration, Bayes rule on a grid,
and the moments of its own samples."""

import math

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.prob import LinearGaussian, bayes_rule

F64 = torch.float64


def _model(d, D_, seed=0, noise=0.7):
    return LinearGaussian.random(d, D_, noise_std=noise, generator=torch.Generator().manual_seed(seed))


def test_one_dimensional_latent_against_a_grid():
    model = _model(1, 3)
    _, x = model.sample(2, generator=torch.Generator().manual_seed(1))
    grid = torch.linspace(-10, 10, 20001, dtype=F64)
    dz = (grid[1] - grid[0]).item()
    z = grid.view(-1, 1, 1).expand(-1, 2, 1)  # [G, batch, d]
    log_joint = model.log_joint(x, z)  # [G, batch]
    # evidence by quadrature: log sum_g p(x, z_g) dz
    evidence = torch.logsumexp(log_joint, 0) + math.log(dz)
    torch.testing.assert_close(model.log_evidence(x), evidence, atol=1e-8, rtol=0)
    # posterior by Bayes rule over the grid: mean and variance
    post, _ = bayes_rule(model.prior().log_prob(z).T, model.likelihood(z).log_prob(x).T, dim=-1)
    w = post.exp()  # [batch, G]
    mean = (w * grid).sum(-1)
    var = (w * grid**2).sum(-1) - mean**2
    exact = model.posterior(x)
    torch.testing.assert_close(exact.loc.squeeze(-1), mean, atol=1e-8, rtol=0)
    torch.testing.assert_close(exact.covariance_matrix[..., 0, 0], var, atol=1e-8, rtol=0)


def test_candidates_formula_holds_at_any_z():
    # log p(x) = log p(x, z) - log p(z | x) for every z: ties evidence, joint and posterior together
    model = _model(3, 5, seed=2)
    g = torch.Generator().manual_seed(3)
    _, x = model.sample(4, generator=g)
    z = torch.randn(6, 4, 3, generator=g, dtype=F64) * 3
    lhs = model.log_joint(x, z) - model.posterior(x).log_prob(z)
    torch.testing.assert_close(lhs, model.log_evidence(x).expand(6, 4), atol=1e-9, rtol=0)


def test_samples_have_the_marginal_moments():
    model = _model(2, 3, seed=4)
    _, x = model.sample(40000, generator=torch.Generator().manual_seed(5))
    marginal = model.marginal()
    torch.testing.assert_close(x.mean(0), marginal.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), marginal.covariance_matrix, atol=0.12, rtol=0.03)


@pytest.mark.parametrize(
    "W, b, s, match",
    [
        (torch.ones(3), torch.zeros(3), 1.0, "matrix"),
        (torch.ones(3, 2), torch.zeros(2), 1.0, "b must"),
        (torch.ones(3, 2), torch.zeros(3), 0.0, "positive"),
    ],
)
def test_invalid_models_are_refused(W, b, s, match):
    with pytest.raises(UserError, match=match):
        LinearGaussian(W, b, s)


def test_wrong_shapes_are_user_errors():
    model = _model(2, 3)
    with pytest.raises(UserError, match="data dimension"):
        model.log_evidence(torch.zeros(4))
    with pytest.raises(UserError, match="latent dimension"):
        model.log_joint(torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64))
