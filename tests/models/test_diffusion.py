"""Discrete-time diffusion (models/diffusion): schedules, Gaussian pieces and the DDPM bound against
closed forms, scipy, identities and Monte Carlo within its standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_ndtr
from scipy.stats import norm

from lowerbound.errors import UserError
from lowerbound.models import registry
from lowerbound.models.diffusion import Schedule
from lowerbound.models.diffusion.gaussian import (
    discretized_gaussian_log_likelihood,
    log_normal_interval,
    normal_kl,
)
from lowerbound.models.diffusion.timesteps import TimestepSampler

from .diffusion_oracles import (
    closed_form_bound,
    point_model,
)

K = 17
_point_model = point_model


# ---------------------------------------------------------------- schedules
def test_linear_schedule_endpoints_and_scaling():
    s = Schedule.make("linear", 1000)
    assert s.betas[1].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    s2 = Schedule.make("linear", 250)
    assert s2.betas[1].item() == pytest.approx(4e-4) and s2.betas[-1].item() == pytest.approx(0.08)
    assert s.betas.dtype == torch.float64
    with pytest.raises(UserError, match="outside"):
        Schedule.make("linear", 10)  # beta_T = 2


def test_cosine_schedule_matches_its_alpha_bar():
    T, sv = 100, 0.008
    s = Schedule.make("cosine", T)
    t = np.arange(T + 1) / T
    f = np.cos((t + sv) / (1 + sv) * np.pi / 2) ** 2
    np.testing.assert_allclose(s.alpha_bar.numpy()[: T - 5], (f / f[0])[: T - 5], rtol=1e-12)
    assert bool((s.betas[1:] <= 0.999).all())


def test_posterior_is_bayes_rule_of_the_forward_process():
    # q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0): precision and mean by completing the square
    s = Schedule.make("cosine", 50)
    t = torch.arange(2, 51)
    prec = s.alphas[t] / s.betas[t] + 1 / (1 - s.alpha_bar[t - 1])
    torch.testing.assert_close(s.posterior_variance[t], 1 / prec)
    torch.testing.assert_close(s.posterior_coef_xt[t], s.alphas[t].sqrt() / s.betas[t] / prec)
    abar_prev = s.alpha_bar[t - 1]
    torch.testing.assert_close(s.posterior_coef_x0[t], abar_prev.sqrt() / (1 - abar_prev) / prec)


# ---------------------------------------------------------------- Gaussian pieces
def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                            torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref)


def test_discretized_gaussian_matches_scipy_and_sums_to_one():
    g = torch.Generator().manual_seed(1)
    mean = torch.rand(40, 1, generator=g, dtype=torch.float64) * 3 - 1.5
    log_scale = torch.rand(40, 1, generator=g, dtype=torch.float64) * 5 - 5
    levels = torch.arange(K)[None, :]
    logp = discretized_gaussian_log_likelihood(levels, mean, log_scale, K)
    # every row is a distribution over the K levels
    zero = torch.zeros(40, dtype=torch.float64)
    torch.testing.assert_close(torch.logsumexp(logp, 1), zero, atol=1e-10, rtol=0)
    c = levels.numpy() * 2 / (K - 1) - 1
    m, sd = mean.numpy(), np.exp(log_scale.numpy())
    lo = np.where(levels.numpy() == 0, -np.inf, c - 1 / (K - 1))
    hi = np.where(levels.numpy() == K - 1, np.inf, c + 1 / (K - 1))
    # scipy's reference, each bin on its own side of the mean so neither difference cancels
    upper = c > m
    with np.errstate(divide="ignore"):
        ref = np.log(np.where(upper, norm.sf(lo, m, sd) - norm.sf(hi, m, sd),
                              norm.cdf(hi, m, sd) - norm.cdf(lo, m, sd)))
    ok = ref > -600
    np.testing.assert_allclose(logp.numpy()[ok], ref[ok], rtol=1e-7, atol=1e-9)


def test_log_interval_stays_accurate_deep_in_both_tails():
    # Phi(b) - Phi(a) at 30-40 standard deviations: plain differences give log(0) = -inf there
    a = torch.tensor([-40.0, 30.0, -1e-3], dtype=torch.float64)
    b = torch.tensor([-39.0, 31.0, 1e-3], dtype=torch.float64)
    got = log_normal_interval(a, b).numpy()
    la, lb = log_ndtr(a.numpy()), log_ndtr(b.numpy())
    ref_low = lb[0] + np.log(-np.expm1(la[0] - lb[0]))
    ref_high = log_ndtr(-30.0) + np.log(-np.expm1(log_ndtr(-31.0) - log_ndtr(-30.0)))
    np.testing.assert_allclose(got, [ref_low, ref_high, np.log(norm.cdf(1e-3) - norm.cdf(-1e-3))], rtol=1e-10)


def test_decoder_gradients_are_finite_at_the_outer_bins():
    mean = torch.tensor([-3.0, 0.0, 3.0, 1.0], dtype=torch.float64, requires_grad=True)
    log_scale = torch.full((4,), -4.0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0, 0, K - 1, 8])
    discretized_gaussian_log_likelihood(x, mean, log_scale, K).sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


# ---------------------------------------------------------------- the bound in closed form
@pytest.mark.parametrize("variance,delta,c", [("fixed_large", 0.0, None), ("fixed_small", 0.3, None),
                                              ("fixed_large", -0.2, None), ("learned_range", 0.1, 0.4)])
def test_full_bound_of_a_point_mass_is_the_closed_form(x_star, variance, delta, c):
    model = _point_model(x_star, variance=variance, delta=delta, c=c)
    b = model.bound(x_star, generator=torch.Generator().manual_seed(0))
    prior, diff, recon = closed_form_bound(model.schedule, K, x_star[0].numpy(), variance, delta,
                                           0.0 if c is None else c)
    assert b.estimator == "vlb-T=1000" and b.dims == 6
    np.testing.assert_allclose(b.terms["prior"].item(), prior, rtol=1e-9)
    np.testing.assert_allclose(b.terms["diffusion"].item(), diff, rtol=1e-6)
    np.testing.assert_allclose(b.terms["reconstruction"].item(), recon, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("variance,c", [("fixed_large", None), ("learned_range", 0.3)])
def test_categorical_posterior_of_a_sure_net_gives_the_closed_form(x_star, variance, c):
    # logits sure of x*: the posterior mean is x* at every step, so the bound is the delta = 0 closed form
    model = _point_model(x_star, parameterization="categorical", variance=variance, c=c, T=300)
    b = model.bound(x_star.repeat(2, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    prior, diff, recon = closed_form_bound(model.schedule, K, x_star[0].numpy(), variance, 0.0,
                                           0.0 if c is None else c)
    np.testing.assert_allclose(b.terms["diffusion"].detach().numpy(), diff, rtol=1e-6)
    np.testing.assert_allclose(b.terms["reconstruction"].detach().numpy(), recon, rtol=1e-6, atol=1e-12)
    ce = model.loss(x_star.repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(0)).terms["mse"]
    assert ce.max().item() < 1e-12  # cross-entropy of a sure, right posterior


class ZeroLogits(torch.nn.Module):
    def forward(self, x_t, t):
        return torch.zeros(x_t.shape[0], K * x_t.shape[1], *x_t.shape[2:])


def test_categorical_posterior_snaps_at_low_noise_without_the_net(x_star):
    # zero logits: at step 1 the likelihood alone picks the level x_t came from
    model = _point_model(x_star, parameterization="categorical", T=300)
    model.net = ZeroLogits()
    y0 = model.signed(x_star).repeat(8, 1, 1, 1)
    one = torch.ones(8, dtype=torch.long)
    x1 = model.q_sample(y0, one, torch.randn(y0.shape, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(model.decode(x1), x_star.repeat(8, 1, 1, 1))
    with pytest.raises(UserError, match="discrete"):
        registry.build("diffusion", {"parameterization": "categorical"}, None, (2,))


@pytest.mark.parametrize("variance", ["fixed_large", "learned_range"])
def test_parameterizations_agree_given_the_same_denoiser(x_star, variance):
    x = x_star.repeat(3, 1, 1, 1)
    bounds = []
    for param in ("eps", "x0", "v"):
        c = -0.3 if variance == "learned_range" else None
        model = _point_model(x_star, parameterization=param, variance=variance, delta=0.25, c=c,
                             T=200, schedule="cosine")
        bounds.append(model.bound(x, generator=torch.Generator().manual_seed(5)))
    for other in bounds[1:]:
        for k in ("prior", "diffusion", "reconstruction"):
            torch.testing.assert_close(other.terms[k], bounds[0].terms[k], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_predict_reads_each_parameterization_as_the_same_denoiser(x_star, parameterization):
    """PointMassNet off by delta in eps, whatever it outputs: eps_hat = (x_t - sqrt(abar) y*) / sqrt(1 - abar)
    + delta and x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar), the pair that DDIM and the ODE read."""
    model = _point_model(x_star, parameterization=parameterization, delta=0.3, T=100)
    steps = torch.tensor([1, 20, 60, 100])
    x_t = torch.randn(4, *x_star.shape[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    abar = model.schedule.alpha_bar[steps].reshape(-1, 1, 1, 1)
    y_star = model.signed(x_star).double()
    eps = (x_t - abar.sqrt() * y_star) / (1 - abar).sqrt() + 0.3
    with torch.no_grad():
        p = model.predict(x_t, steps)
    torch.testing.assert_close(p["eps"], eps)
    torch.testing.assert_close(p["x0"], (x_t - (1 - abar).sqrt() * eps) / abar.sqrt())


@pytest.mark.parametrize("sampling", ["uniform", "importance"])
def test_vlb_loss_is_an_unbiased_estimate_of_the_bound(x_star, sampling):
    model = _point_model(x_star, variance="fixed_large", delta=0.1, T=100, loss="vlb",
                         timestep_sampling=sampling)
    full = model.bound(x_star).nats.item()
    g = torch.Generator().manual_seed(2)
    x = x_star.repeat(500, 1, 1, 1)
    for _ in range(5):  # warm the importance sampler's history (10 values per step)
        model.loss(x, generator=g)
    if sampling == "importance":
        assert model.sampler.warm
        p = model.sampler.probabilities()
        assert p.max() > 5 * p.min()  # really non-uniform here
    est = torch.cat([model.loss(x, generator=g).nats for _ in range(8)])
    assert abs(est.mean().item() - full) < 4 * est.std().item() / math.sqrt(est.numel())


def test_importance_history_matches_one_value_at_a_time():
    g = torch.Generator().manual_seed(4)
    batched, serial = TimestepSampler(5, "importance", history=3), TimestepSampler(5, "importance", history=3)
    for _ in range(4):
        i = torch.randint(1, 6, (12,), generator=g)
        values = torch.randn(12, generator=g, dtype=torch.float64)
        batched.update(i, values)
        for a, v in zip(i, values):
            serial.update(a[None], v[None])
    torch.testing.assert_close(batched.history, serial.history)
    torch.testing.assert_close(batched.count, serial.count)


def test_hybrid_bound_term_trains_only_the_variance(x_star):
    model = _point_model(x_star, variance="learned_range", delta=0.2, c=0.1, loss="hybrid", T=100)
    out = model.loss(x_star.repeat(16, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    assert out.estimator == "hybrid" and set(out.terms) == {"mse", "vlb"}
    out.terms["vlb"].sum().backward()
    assert model.net.delta.grad is None or model.net.delta.grad.item() == 0.0
    assert model.net.c.grad.abs().item() > 0


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_simple_loss_is_the_mse_of_each_parameterizations_target(x_star, parameterization):
    """eps off by delta: x0_hat - x0 = -sqrt(1 - abar) / sqrt(abar) delta and v_hat - v = delta / sqrt(abar),
    at steps fixed by hand (the sampler's draw replaced)."""
    model = _point_model(x_star, parameterization=parameterization, delta=0.3, T=100)
    steps = torch.tensor([1, 30, 70, 100]).repeat(2)
    model.sampler.sample = lambda n, generator=None, device=None: (steps, torch.full((8,), 0.01).double())
    out = model.loss(x_star.repeat(8, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    assert out.estimator == "l_simple"
    abar = model.schedule.alpha_bar[steps]
    want = {"eps": torch.ones_like(abar), "x0": (1 - abar) / abar, "v": 1 / abar}[parameterization] * 0.09
    torch.testing.assert_close(out.terms["mse"], want, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- construction, config, state
@pytest.mark.parametrize("options,match", [
    ({"bogus": 1}, "Unknown option"),
    ({"variance": "learned_range", "loss": "simple", "timestep_sampling": "uniform"}, "hybrid or vlb"),
    ({"loss": "hybrid", "variance": "fixed_large"}, "learned_range"),
    ({"timestep_sampling": "importance", "loss": "simple", "variance": "fixed_large"}, "vlb or hybrid"),
    ({"parameterization": "score"}, "parameterization"),
    ({"net": "unet"}, None),
])
def test_bad_options_get_one_clear_sentence(options, match):
    if match is None:
        with pytest.raises(UserError, match="square images"):
            registry.build("diffusion", options, None, (2,))
        return
    with pytest.raises(UserError, match=match):
        registry.build("diffusion", options, K, (1, 8, 8))


def test_bound_refuses_data_that_are_not_levels(x_star):
    model = _point_model(x_star, T=100)
    with pytest.raises(UserError, match="levels"):
        model.bound(x_star.float())
    with pytest.raises(UserError, match="shape"):
        model.bound(x_star[:, :, :1])


def test_importance_history_survives_a_state_dict_round_trip(x_star):
    a = _point_model(x_star, variance="fixed_large", T=100, loss="vlb", timestep_sampling="importance")
    a.loss(x_star.repeat(300, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    b = _point_model(x_star, variance="fixed_large", T=100, loss="vlb", timestep_sampling="importance")
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.sampler.history, a.sampler.history)
    assert int(b.sampler.count.sum()) == 300

