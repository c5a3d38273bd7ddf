"""Samplers (sample/): with the exact denoiser of a point mass every sampler returns that point;
with the exact denoiser of Gaussian data the samples have the data's variance; the model's own
sample() is the ancestral sampler."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lowerbound.errors import UserError
from lowerbound.models.diffusion import Diffusion, Schedule
from lowerbound.sample import ancestral, ddim, ddim_steps

from ..models.diffusion_oracles import PointMassNet

K = 17


def _point_model(T=100, variance="fixed_small", parameterization="eps"):
    x_star = torch.randint(0, K, (1, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    net = PointMassNet(Schedule.make("linear", T), x_star.double() * 2 / (K - 1) - 1, parameterization)
    model = Diffusion(net, levels=K, shape=(1, 4, 4), timesteps=T, variance=variance,
                      parameterization=parameterization)
    return model, x_star


@pytest.mark.parametrize("variance,parameterization", [("fixed_small", "eps"), ("fixed_large", "v")])
def test_every_sampler_returns_the_point_mass(variance, parameterization):
    model, x_star = _point_model(variance=variance, parameterization=parameterization)
    g = torch.Generator().manual_seed(1)
    for out in (ancestral(model, 6, generator=g, progress=False, batch_size=4),
                ddim(model, 5, steps=10, eta=0.0, generator=g, progress=False),
                ddim(model, 5, steps=7, eta=1.0, generator=g, progress=False, batch_size=2)):
        assert out.dtype == torch.long
        assert torch.equal(out, x_star.expand_as(out))


class GaussianDenoiser(nn.Module):
    """E[eps | x_t] for data N(0, s^2) in each coordinate: sqrt(1 - abar) x_t / (abar s^2 + 1 - abar)."""

    def __init__(self, schedule, s):
        super().__init__()
        self.abar, self.T, self.s2 = schedule.alpha_bar, schedule.timesteps, s * s

    def forward(self, x_t, t):
        abar = self.abar[torch.round(t.double() * self.T).long()][:, None]
        return (1 - abar).sqrt() * x_t.double() / (abar * self.s2 + 1 - abar)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samples_of_gaussian_data_have_its_variance(sampler):
    T, s, n = 200, 0.5, 4000
    model = Diffusion(GaussianDenoiser(Schedule.make("cosine", T), s), levels=None, shape=(2,), timesteps=T,
                      schedule="cosine", variance="fixed_small")
    g = torch.Generator().manual_seed(2)
    if sampler == "ancestral":
        x = ancestral(model, n, generator=g, progress=False, batch_size=n)
    else:
        x = ddim(model, n, steps=40, generator=g, progress=False)
    # the sample std of 2n normal draws has relative standard error 1/sqrt(4n) ~ 0.8%
    assert x.std().item() == pytest.approx(s, rel=0.05)
    assert abs(x.mean().item()) < 4 * s / (2 * n) ** 0.5


def test_ddim_with_every_step_and_eta_one_is_the_ancestral_sampler():
    # Song et al. 2021: eta = 1 on the full sequence gives sigma^2 = the posterior variance and the
    # posterior mean, i.e. DDPM with fixed_small; both draw the same noise in the same order
    T = 60
    model = Diffusion(GaussianDenoiser(Schedule.make("cosine", T), 0.5), levels=None, shape=(3,), timesteps=T,
                      schedule="cosine", variance="fixed_small")
    a = ancestral(model, 9, generator=torch.Generator().manual_seed(4), progress=False, batch_size=9)
    b = ddim(model, 9, steps=T, eta=1.0, generator=torch.Generator().manual_seed(4), progress=False,
             batch_size=9)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_model_sample_is_the_ancestral_sampler():
    model = Diffusion(GaussianDenoiser(Schedule.make("linear", 100), 0.5), levels=None, shape=(2,),
                      timesteps=100)
    a = model.sample(7, generator=torch.Generator().manual_seed(3))
    b = ancestral(model, 7, generator=torch.Generator().manual_seed(3), progress=False, batch_size=7)
    torch.testing.assert_close(a, b)


def test_ddim_steps_cover_both_ends():
    steps = ddim_steps(1000, 50)
    assert steps[0] == 1000 and steps[-1] == 1 and len(steps) == 50
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert ddim_steps(10, 10) == list(range(10, 0, -1))


def test_bad_requests_get_one_sentence():
    model, _ = _point_model()
    with pytest.raises(UserError, match="steps"):
        ddim(model, 2, steps=500, progress=False)
    with pytest.raises(UserError, match="eta"):
        ddim(model, 2, eta=1.5, progress=False)
    with pytest.raises(UserError, match="at least one"):
        ancestral(model, 0, progress=False)
    with pytest.raises(UserError, match="diffusion"):
        ancestral(nn.Linear(2, 2), 2, progress=False)
