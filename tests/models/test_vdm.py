"""VDM (Kingma et al. 2021) against closed forms: exact denoisers of a point mass and of Gaussian
data, the categorical decoder, the MC estimator's variance, and the variance-minimizing gradient."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lowerbound.errors import UserError
from lowerbound.models import build
from lowerbound.models.diffusion.vdm import VDM, VDMConfig
from lowerbound.nets.time_mlp import TimeMLP
from lowerbound.nets.unet import UNet
from lowerbound.prob.units import to_signed

from ..coverage import assert_coverage

F64 = torch.float64


class ExactDenoiser(nn.Module):
    """eps_hat = E[eps | z_t] for data y ~ N(mu, s^2 I) (s = 0: a point mass at mu), computed from
    the normalized gamma the model passes in."""

    def __init__(self, config: VDMConfig, mu: torch.Tensor, s: float):
        super().__init__()
        self.c, self.mu, self.s2 = config, mu, s * s

    def forward(self, z, t):
        gamma = self.c.gamma_min + t * (self.c.gamma_max - self.c.gamma_min)
        view = (-1,) + (1,) * (z.dim() - 1)
        a2, sig2 = torch.sigmoid(-gamma).view(view), torch.sigmoid(gamma).view(view)
        resid = z - a2.sqrt() * self.mu
        return sig2.sqrt() * resid / (a2 * self.s2 + sig2)


def _model(levels, shape, net_factory=None, seed=0, **options):
    torch.manual_seed(seed)
    options = {"gamma_min": -13.3, "fourier": (), **options}
    config = VDMConfig(schedule_hidden=16, width=32, depth=1, emb_dim=8, **options)
    net = net_factory(config) if net_factory else None
    return VDM(config, levels=levels, shape=shape, net=net).double()


def _randomize_schedule(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.schedule.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 2)


def test_point_mass_with_exact_denoiser_has_zero_diffusion_loss_and_closed_form_bound():
    levels, x_star = 17, torch.tensor([[0, 5, 16]])
    y_star = to_signed(x_star, levels).to(F64)
    m = _model(levels, (3,), lambda c: ExactDenoiser(c, y_star, 0.0))
    _randomize_schedule(m, 1)
    x = x_star.repeat(64, 1)
    b = m.bound(x, samples=8, generator=torch.Generator().manual_seed(0))
    assert b.terms["diffusion"].abs().max() < 1e-9
    assert m.loss(x).terms["diffusion"].abs().max() < 1e-9
    _, g1 = m.schedule.endpoints()
    q1 = torch.distributions.Normal(torch.sigmoid(-g1).sqrt() * y_star, torch.sigmoid(g1).sqrt())
    kl = torch.distributions.kl_divergence(q1, torch.distributions.Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(b.terms["prior"], kl.expand(64).detach())
    # gamma_0 = -13.3: the decoder's std is 1e-3 of a level spacing of 0.125, so it never misses
    assert b.terms["reconstruction"].max() < 1e-9


def test_x_parameterization_with_exact_point_mass_denoiser_is_exact():
    y_star = torch.tensor([[-1.0, 0.25, 1.0]], dtype=F64)

    class PointX(nn.Module):
        def forward(self, z, t):
            return y_star.expand_as(z)

    m = _model(17, (3,), lambda c: PointX(), parameterization="x")
    _randomize_schedule(m, 4)
    x = torch.tensor([[0, 10, 16]]).repeat(32, 1)
    assert m.loss(x).terms["diffusion"].abs().max() < 1e-6


def test_point_mass_sampler_returns_the_point():
    x_star = torch.tensor([[[3, 9], [16, 0]]])
    m = _model(17, (1, 2, 2), lambda c: ExactDenoiser(c, to_signed(x_star, 17).to(F64), 0.0))
    out = m.sample(8, torch.Generator().manual_seed(0), steps=50)
    assert out.dtype == torch.long and torch.equal(out, x_star.expand(8, 1, 2, 2))


@pytest.mark.parametrize("schedule", ["linear", "learned"])
def test_gaussian_data_bound_equals_exact_nll(schedule):
    """Data N(0, s^2 I), exact denoiser, extreme ends: the continuous-time ELBO is tight, so its
    expectation over (t, eps) equals -log N(x; 0, s^2 I) (slack ~1e-5 nats at gamma = -+12)."""
    s, d = 0.5, 3
    m = _model(None, (d,), lambda c: ExactDenoiser(c, torch.zeros(d, dtype=F64), s),
               schedule=schedule, gamma_min=-12.0, gamma_max=12.0, learn_endpoints=False)
    if schedule == "learned":
        _randomize_schedule(m, 2)
    x = torch.randn(4, d, dtype=F64, generator=torch.Generator().manual_seed(5)) * s
    truth = -torch.distributions.Normal(0.0, s).log_prob(x).sum(1)
    with torch.no_grad():
        b = m.bound(x, samples=200_000, generator=torch.Generator().manual_seed(1))
    stderr = b.variance.sqrt()
    assert ((b.nats - truth).abs() < 4 * stderr + 1e-4).all(), (b.nats, truth, stderr)
    assert stderr.max() < 0.08  # the check has teeth
    # loss(): one low-discrepancy t per example; averaged over copies of one x it is the same ELBO
    with torch.no_grad():
        lo = m.loss(x[:1].repeat(200_000, 1), generator=torch.Generator().manual_seed(2)).nats
    assert abs(lo.mean() - truth[0]) < 4 * lo.std() / math.sqrt(len(lo))


def test_gaussian_data_on_another_scale_pay_the_change_of_variables():
    """x = scale * y: -log p(x) = -log p(y) + D log(scale), so the bound on x ~ N(0, (s scale)^2 I)
    is that density's exact NLL (the sign of the D log(scale) term is 4 nats here)."""
    s, d, scale = 0.5, 3, 2.0
    m = _model(None, (d,), lambda c: ExactDenoiser(c, torch.zeros(d, dtype=F64), s), schedule="linear",
               gamma_min=-12.0, gamma_max=12.0, learn_endpoints=False, scale=scale)
    x = torch.randn(2, d, dtype=F64, generator=torch.Generator().manual_seed(5)) * s * scale
    truth = -torch.distributions.Normal(0.0, s * scale).log_prob(x).sum(1)
    with torch.no_grad():
        b = m.bound(x, samples=20_000, generator=torch.Generator().manual_seed(1))
    stderr = b.variance.sqrt()
    assert ((b.nats - truth).abs() < 4 * stderr + 1e-4).all(), (b.nats, truth, stderr)
    assert stderr.max() < 0.3


def test_discrete_reconstruction_matches_quadrature_over_z0():
    """E_{z_0}[-log p(x | z_0)] with z_0 / alpha_0 = y + exp(gamma_0 / 2) eps, by Gauss-Hermite
    quadrature over eps; gamma_0 = -2 makes the decoder's noise 0.74 of a level spacing, so a wrong
    noise level (exp(gamma_0)) is far outside the Monte Carlo error."""
    levels, n = 5, 4000
    x_star = torch.tensor([[0, 2, 4]])
    y_star = to_signed(x_star, levels).to(F64)
    m = _model(levels, (3,), lambda c: ExactDenoiser(c, y_star, 0.0), gamma_min=-2.0, schedule="linear",
               learn_endpoints=False)
    with torch.no_grad():
        b = m.bound(x_star.repeat(n, 1), samples=1, generator=torch.Generator().manual_seed(0))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / math.sqrt(2 * math.pi)
    sd, centres = math.exp(-1.0), np.linspace(-1, 1, levels)
    want = 0.0
    for level in x_star[0].tolist():
        z = centres[level] + sd * nodes  # z_0 / alpha_0 at each node
        logits = -((z[:, None] - centres[None]) ** 2) / (2 * sd ** 2)
        logp = logits[:, level] - np.logaddexp.reduce(logits, 1)
        want += float(weights @ -logp)
    got = b.terms["reconstruction"]
    stderr = got.std().item() / math.sqrt(n)
    assert abs(got.mean().item() - want) < 4 * stderr, (got.mean().item(), want, stderr)
    assert b.terms["diffusion"].abs().max() < 1e-9


def test_gaussian_sampler_matches_data_scale():
    s = 0.5
    m = _model(None, (2,), lambda c: ExactDenoiser(c, torch.zeros(2, dtype=F64), s), scale=2.0)
    out = m.sample(4000, torch.Generator().manual_seed(0), steps=100)
    # the model sees y = x / 2 ~ N(0, 0.25), so x ~ N(0, 1)
    assert out.dtype == F64 and abs(out.std().item() - 2 * s) < 0.05 and abs(out.mean()) < 0.05


def test_categorical_decoder_is_normalized_gaussian_over_levels():
    levels = 5
    m = _model(levels, (4,))
    z = torch.randn(3, 4, dtype=F64)
    g0 = torch.tensor(-1.3, dtype=F64)
    logp = m._decoder_logits(z, g0)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 4, dtype=F64))
    centres = torch.linspace(-1, 1, levels, dtype=F64)
    ref = torch.distributions.Normal(centres, math.exp(0.5 * g0.item())).log_prob(z.unsqueeze(-1))
    torch.testing.assert_close(logp, ref - ref.logsumexp(-1, keepdim=True))


def test_bound_variance_is_consistent_with_repeated_draws():
    m = _model(17, (4,))
    x = torch.randint(0, 17, (6, 4), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        runs = [m.bound(x, samples=8, generator=g) for _ in range(200)]
    totals = torch.stack([r.nats for r in runs])
    reported = torch.stack([r.variance for r in runs]).mean(0)
    ratio = totals.var(0).sum() / reported.sum()
    assert 0.75 < ratio.item() < 1.33, ratio


def test_bound_variance_covers_the_exact_nll():
    """Gaussian data and their exact denoiser: E[bound] is -log N(x; 0, s^2) (to ~1e-5 nats).  The
    interval of Bound.variance (k = 4 draws of (t, eps) per copy), pooled over 50 copies of x, holds
    it within binomial error over 300 intervals."""
    s, d = 0.5, 3
    m = _model(None, (d,), lambda c: ExactDenoiser(c, torch.zeros(d, dtype=F64), s), schedule="linear",
               gamma_min=-12.0, gamma_max=12.0, learn_endpoints=False)
    x = torch.randn(1, d, dtype=F64, generator=torch.Generator().manual_seed(5)) * s
    truth = -torch.distributions.Normal(0.0, s).log_prob(x).sum().item()
    with torch.no_grad():
        b = m.bound(x.repeat(300 * 50, 1), samples=4, generator=torch.Generator().manual_seed(6))
    assert_coverage(b.nats.reshape(300, 50).mean(1), b.variance.reshape(300, 50).sum(1).sqrt() / 50, truth)


def test_loss_routes_variance_gradient_to_interior_and_elbo_gradient_to_endpoints():
    m = _model(17, (4,), learn_endpoints=True)
    x = torch.randint(0, 17, (16, 4), generator=torch.Generator().manual_seed(0))
    m.loss(x, generator=torch.Generator().manual_seed(3)).mean().backward()
    got = {n: p.grad.clone() for n, p in m.schedule.named_parameters()}
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in got.values())
    # replay the same draws by hand: t from one uniform shift, then eps for z_t, then for z_0
    m.zero_grad()
    gen = torch.Generator().manual_seed(3)
    y = to_signed(x, 17).to(F64)
    t = torch.remainder(torch.rand(1, generator=gen, dtype=F64) + torch.arange(16) / 16, 1.0)
    diff = m._diffusion(y, t, gen)[0]
    elbo = (m._prior(y) + diff + m._reconstruction(x, y, gen)).mean()
    var_grad = (diff.pow(2).mean() / (2 * diff.mean().detach()))
    eta = [p for n, p in m.schedule.named_parameters() if n.startswith("net.")]
    ends = [m.schedule.gamma_0_param, m.schedule.raw_gap]
    for want, name in zip(torch.autograd.grad(var_grad, eta, retain_graph=True),
                          [n for n, _ in m.schedule.named_parameters() if n.startswith("net.")]):
        torch.testing.assert_close(got[name], want)
    for want, name in zip(torch.autograd.grad(elbo, ends), ["gamma_0_param", "raw_gap"]):
        torch.testing.assert_close(got[name], want)


def test_bound_gradient_reaches_schedule_and_net():
    m = _model(17, (4,), learn_endpoints=True, fourier=(1, 2))
    x = torch.randint(0, 17, (8, 4), generator=torch.Generator().manual_seed(0))
    b = m.bound(x, samples=2)
    assert b.estimator == "vdm-mc-k=2" and set(b.terms) == {"prior", "diffusion", "reconstruction"}
    b.mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.schedule.net.raw_w.grad.abs().sum() > 0 and m.schedule.gamma_0_param.grad != 0


def test_fourier_features_reach_the_net():
    seen = {}

    class Spy(nn.Module):
        def forward(self, z, t):
            seen["z"] = z
            return z[:, :2]

    m = _model(None, (2,), lambda c: Spy(), fourier=(0, 3))
    z = torch.randn(5, 2, dtype=F64)
    m._eps_hat(z, torch.zeros(5, dtype=F64))
    ang = z.unsqueeze(2) * (2 * math.pi * torch.tensor([1.0, 8.0], dtype=F64))
    want = torch.cat([z, torch.cat([ang.sin(), ang.cos()], 2).flatten(1)], 1)
    torch.testing.assert_close(seen["z"], want)


def test_registry_config_and_bad_input():
    assert isinstance(build("vdm", {"unet": {"channels": 8}}, 17, (1, 8, 8)).net, UNet)  # auto
    m = build("vdm", {"width": 16, "depth": 1, "schedule_hidden": 8, "net": "mlp"}, 17, (1, 8, 8))
    assert isinstance(m.net.inner, TimeMLP) and m.estimators == ("mc", "lds", "ode")
    # automatic choices for K = 17: gamma_0 = -13.3 + 2 log(255/16), features of period one bin
    assert m.config.gamma_min == pytest.approx(-7.7627, abs=1e-4) and m.config.fourier == (3, 4)
    assert m.net.inner.d_in == 64 * 5
    assert m.sample(2, torch.Generator().manual_seed(0), steps=3).shape == (2, 1, 8, 8)
    with pytest.raises(UserError, match="gamma_min"):
        build("vdm", {"gamma_min": 3.0, "gamma_max": 1.0}, 17, (4,))
    with pytest.raises(UserError, match="vdm.bogus"):
        build("vdm", {"bogus": 1}, 17, (4,))
    with pytest.raises(UserError, match="levels 0..16"):
        m.bound(torch.full((2, 1, 8, 8), 17))
    with pytest.raises(UserError, match="shape"):
        m.bound(torch.zeros(2, 64, dtype=torch.long))
    with pytest.raises(UserError, match="estimator"):
        m.bound(torch.zeros(2, 1, 8, 8, dtype=torch.long), estimator="full")
