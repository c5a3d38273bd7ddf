"""The DDPM bound's estimators against oracles that can fail on a wrong line: the Monte Carlo estimator
over timesteps at T = 4 (exact values and expectation), a net that reads x_t checked by quadrature, real
nets' bounds replayed through the papers' formulas, T = 1 in closed form, and the reported variances
(coverage, the decoder draws' share, the successive-difference estimate's expectation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lowerbound.models import registry
from lowerbound.models.diffusion import Diffusion
from lowerbound.models.diffusion.vlb import neighbour_variance as _neighbour_variance

from ..coverage import assert_coverage
from .diffusion_oracles import (
    Chain,
    PointMassNet,
    SmoothNet,
    Spy,
    closed_form_bound,
    point_model,
    quadrature_terms,
    replay_bound,
)

K = 17
_point_model = point_model


def _small_t_point_model(x_star):
    """T = 4 (cosine): an error in the weight T - 1 or in the range of t is tens of percent, not 0.1%."""
    return _point_model(x_star, variance="fixed_small", delta=0.2, T=4, schedule="cosine")


def test_mc_estimator_takes_exactly_the_values_of_its_definition(x_star):
    # one step per example: the estimate is (T - 1) L_t for one t in 2..T, each about equally often
    model = _small_t_point_model(x_star)
    _, steps, recon = closed_form_bound(model.schedule, K, x_star[0].numpy(), "fixed_small", 0.2,
                                        per_step=True)
    b = model.bound(x_star.repeat(600, 1, 1, 1), estimator="mc", samples=1,
                    generator=torch.Generator().manual_seed(0))
    allowed = torch.tensor(3 * steps)
    nearest = (b.terms["diffusion"][:, None] - allowed[None]).abs().argmin(1)
    torch.testing.assert_close(b.terms["diffusion"], allowed[nearest], rtol=1e-9, atol=0)
    counts = torch.bincount(nearest, minlength=3).double()
    assert ((counts - 200).abs() < 4 * math.sqrt(600 * (1 / 3) * (2 / 3))).all(), counts
    np.testing.assert_allclose(b.terms["reconstruction"].detach().numpy(), recon, rtol=1e-6)


def test_mc_estimator_is_unbiased_with_honest_variance(x_star):
    model = _small_t_point_model(x_star)
    n, k = 1024, 8
    x = x_star.repeat(n, 1, 1, 1)
    _, steps, _ = closed_form_bound(model.schedule, K, x_star[0].numpy(), "fixed_small", 0.2, per_step=True)
    full = steps.sum()
    true_var = np.var((model.timesteps - 1) * steps) / k  # of one estimate: t uniform on 2..T
    b = model.bound(x, estimator="mc", samples=k, generator=torch.Generator().manual_seed(1))
    assert b.estimator == "vlb-mc-k=8" and b.variance is not None
    # the mean of n independent estimates is within 4 standard errors of the full sum; the weight T
    # instead of T - 1 is 21 standard errors off, t drawn from 1..T 13
    assert abs(b.terms["diffusion"].mean().item() - full) < 4 * math.sqrt(true_var / n)
    # the reported per-example variance is unbiased for the true one (pooled over n examples)
    assert b.variance.mean().item() == pytest.approx(true_var, rel=0.15)
    torch.testing.assert_close(b.terms["reconstruction"], model.bound(x).terms["reconstruction"])


# ---------------------------------------------------------------- a net that reads x_t: quadrature
@pytest.mark.parametrize("parameterization,variance,clip", [
    ("eps", "fixed_large", False), ("v", "learned_range", False), ("x0", "fixed_small", False),
    ("categorical", "learned_range", False), ("x0", "fixed_large", True), ("eps", "fixed_small", True)])
def test_bound_of_a_net_reading_x_t_matches_quadrature(parameterization, variance, clip):
    """SmoothNet's terms depend on x_t non-linearly: the mean over copies of one example of the full
    bound (one x_t draw per term) must equal the expectation over x_t computed by quadrature, per term.
    A wrong noise level in q_sample (abar for sqrt(abar)) is 8-24 standard errors off here."""
    levels, T, n = 5, 4, 2000
    x = torch.tensor([[[[0, 4]], [[2, 3]]]])  # [1, C=2, 1, 2]: both outer levels and inner ones
    net = SmoothNet(parameterization, variance == "learned_range", levels)
    model = Diffusion(net, levels=levels, shape=(2, 1, 2), timesteps=T, schedule="cosine",
                      parameterization=parameterization, variance=variance, loss="vlb", clip_x0=clip)
    b = model.bound(x.repeat(n, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    oracle = np.sum([quadrature_terms(model.schedule, levels, level, parameterization, variance, clip)
                     for level in x.flatten().tolist()], 0)
    np.testing.assert_allclose(b.terms["prior"].numpy(), oracle[0], rtol=1e-9)
    for name, want in zip(("diffusion", "reconstruction"), oracle[1:]):
        v = b.terms[name]
        stderr = v.std().item() / math.sqrt(n)
        assert abs(v.mean().item() - want) < 4 * stderr, (name, v.mean().item(), want, stderr)


@pytest.mark.parametrize("estimator", ["mc", "full"])
def test_reported_variance_covers_the_quadrature_value(estimator):
    """Bound.variance (the x_t draws, the t draws for mc, the decoder's two draws) pooled over 100 copies
    of one example gives a 95% interval that holds the exact expectation (quadrature, SmoothNet) as
    often as it should, over 300 such groups."""
    levels, groups, size = 5, 300, 100
    model = Diffusion(SmoothNet("x0", False, levels), levels=levels, shape=(1,), timesteps=50,
                      schedule="cosine", parameterization="x0", variance="fixed_large")
    exact = sum(quadrature_terms(model.schedule, levels, 1, "x0", "fixed_large"))
    with torch.no_grad():
        b = model.bound(torch.ones(groups * size, 1, dtype=torch.long), estimator=estimator, samples=16,
                        generator=torch.Generator().manual_seed(0))
    means = b.nats.reshape(groups, size).mean(1)
    stderrs = b.variance.reshape(groups, size).sum(1).sqrt() / size
    assert_coverage(means, stderrs, exact)


def test_neighbour_variance_has_its_stated_expectation():
    """Independent rows of equal means and variances V: E = V_0 + 1.5 V_1 + V_2 + ... + 1.5 V_{n-2} + V_{n-1}
    (>= sum V); a dominant end term counts in full."""
    v = torch.tensor([100.0, 1.0, 2.0, 1.0, 4.0], dtype=torch.float64)
    noise = torch.randn(5, 40000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = noise * v.sqrt()[:, None]
    got = _neighbour_variance(rows + 3.0)
    want = (v * torch.tensor([1.0, 1.5, 1.0, 1.5, 1.0], dtype=torch.float64)).sum().item()
    assert abs(got.mean().item() - want) < 4 * got.std().item() / 200 and want >= v.sum().item()


class _ExactButTheDecoder(nn.Module):
    """The exact denoiser of a point mass for t >= 2 (every diffusion term is 0 whatever x_t is), and
    SmoothNet at t = 1: all the bound's noise is the decoder draw's."""

    def __init__(self, schedule, y_star):
        super().__init__()
        self.point, self.smooth = PointMassNet(schedule, y_star, "x0"), SmoothNet("x0")
        self.T = schedule.timesteps

    def forward(self, x_t, t):
        first = (torch.round(t * self.T) == 1).reshape(-1, *([1] * (x_t.dim() - 1)))
        return torch.where(first, self.smooth(x_t, t), self.point(x_t, t))


@pytest.mark.parametrize("estimator", ["mc", "full"])
def test_reported_variance_holds_the_decoder_draws_noise(estimator):
    levels, n, T = 5, 4000, 6
    model = Diffusion(nn.Identity(), levels=levels, shape=(1,), timesteps=T, schedule="cosine",
                      parameterization="x0", variance="fixed_small")
    model.net = _ExactButTheDecoder(model.schedule, torch.tensor([[-0.5]], dtype=torch.float64))
    with torch.no_grad():
        b = model.bound(torch.ones(n, 1, dtype=torch.long), estimator=estimator, samples=4,
                        generator=torch.Generator().manual_seed(0))
    assert b.terms["diffusion"].abs().max() < 1e-9
    observed = b.nats.var().item()  # the spread over copies: the variance of one estimate
    assert b.variance.mean().item() == pytest.approx(observed, rel=0.1)


def _replayed(model, x, estimator="full"):
    """The model's bound on ONE example next to the same bound recomputed by the papers' formulas
    (diffusion_oracles.Chain) from the very (x_t, t, output) rows its net saw."""
    spy = Spy(model.net)
    model.net = spy
    with torch.no_grad():
        b = model.bound(x, estimator=estimator, generator=torch.Generator().manual_seed(0))
    model.net = spy.inner
    chain = Chain(model.schedule, model.levels, model.parameterization, model.variance)
    y = x[0].double().numpy() if model.levels is None else x[0].numpy() * 2 / (model.levels - 1) - 1.0
    diff, recon = replay_bound(chain, x[0].numpy(), y, spy.calls)
    return b, diff, recon, chain.prior(y).sum()


@pytest.mark.parametrize("options", [
    {"parameterization": "categorical", "variance": "learned_range", "loss": "hybrid"},
    {"parameterization": "eps", "variance": "learned_range", "loss": "hybrid"},
    {"parameterization": "v", "variance": "fixed_small", "loss": "simple", "timestep_sampling": "uniform"},
])
def test_a_registry_unet_model_computes_the_papers_bound_on_digits_shapes(options):
    """The bound of a real UNet on 8x8 images, term by term, equals the papers' formulas applied to the
    rows its net saw: channel splits (learned_range), level-major logits (categorical), the decoder's
    outer bins; and the training loss reaches every weight."""
    model = registry.build("diffusion", {"timesteps": 4, "unet": {"channels": 8, "channel_mult": [1, 2]},
                                         "net": "unet", **options}, K, (1, 8, 8))
    x = torch.randint(0, K, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, :2] = torch.tensor([0, K - 1])
    model.loss(x, generator=torch.Generator().manual_seed(0)).mean().backward()
    assert all(p.grad is not None for p in model.net.parameters())
    b, diff, recon, prior = _replayed(model.eval(), x[:1])
    np.testing.assert_allclose(b.terms["diffusion"].item(), diff, rtol=1e-7)
    np.testing.assert_allclose(b.terms["reconstruction"].item(), recon, rtol=1e-7)
    np.testing.assert_allclose(b.terms["prior"].item(), prior, rtol=1e-9)


def test_vector_data_get_the_time_mlp_and_a_gaussian_density_decoder():
    model = registry.build("diffusion", {"timesteps": 5, "mlp": {"width": 16, "depth": 1}}, None, (2,))
    x = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    b, diff, recon, prior = _replayed(model.eval(), x)
    np.testing.assert_allclose(b.terms["diffusion"].item(), diff, rtol=1e-6)
    np.testing.assert_allclose(b.terms["reconstruction"].item(), recon, rtol=1e-6)
    np.testing.assert_allclose(b.terms["prior"].item(), prior, rtol=1e-6)
    with torch.no_grad():
        s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 2) and s.is_floating_point()


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_a_single_step_process_is_prior_plus_decoder_in_closed_form(x_star, variance):
    """T = 1: no diffusion term; the decoder's variance is beta_1 whatever the variance option, and
    both estimators give the closed form."""
    model = _point_model(x_star, variance=variance, delta=0.3, T=1)
    prior, diff, recon = closed_form_bound(model.schedule, K, x_star[0].numpy(), variance, 0.3)
    assert diff == 0.0
    for estimator in ("full", "mc"):
        b = model.bound(x_star.repeat(3, 1, 1, 1), estimator=estimator, samples=4,
                        generator=torch.Generator().manual_seed(1))
        assert torch.equal(b.terms["diffusion"], torch.zeros(3).double())
        np.testing.assert_allclose(b.terms["reconstruction"].detach().numpy(), recon, rtol=1e-9)
        np.testing.assert_allclose(b.terms["prior"].detach().numpy(), prior, rtol=1e-9)
    assert model.bound(x_star).estimator == "vlb-T=1"
