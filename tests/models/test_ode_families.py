"""The ODE estimator through the two diffusion families: VDM and DDPM with the exact eps of Gaussian
data N(mu, s^2 I) plugged in as their net give the closed-form log-density (which depends on the
process only through its two ends: the flow maps N(alpha_0 mu, Sigma_0) onto N(alpha_1 mu, Sigma_1),
Sigma_t = alpha_t^2 s^2 + sigma_t^2); decoder dequantization is above -log P(x) by quadrature; the
command line scores a run with --estimator ode."""

import json
import math

import pytest
import torch
from torch import nn

from lowerbound.cli import main
from lowerbound.errors import UserError
from lowerbound.models import build
from lowerbound.models.diffusion.ddpm import Diffusion
from lowerbound.models.diffusion.ode import ode_bound
from lowerbound.models.diffusion.vdm import VDM, VDMConfig

F64 = torch.float64


def closed_form(y, mu, s2, a0, s0, a1, s1):
    """(prior, divergence) [B] nats for data N(mu, s2 I) between the ends (alpha_0, sigma_0) and
    (alpha_1, sigma_1)."""
    v0, v1 = a0 ** 2 * s2 + s0 ** 2, a1 ** 2 * s2 + s1 ** 2
    z1 = a1 * mu + math.sqrt(v1 / v0) * (y - a0 * mu)
    d = y.shape[1]
    prior = 0.5 * z1.pow(2).sum(1) + 0.5 * d * math.log(2 * math.pi)
    return prior, torch.full((len(y),), 0.5 * d * math.log(v0 / v1), dtype=F64)


def _exact_eps(z, gamma, mu, s2):
    view = (-1,) + (1,) * (z.dim() - 1)
    a2, sig2 = torch.sigmoid(-gamma).view(view), torch.sigmoid(gamma).view(view)
    return sig2.sqrt() * (z - a2.sqrt() * mu) / (a2 * s2 + sig2)


class VDMExact(nn.Module):
    """eps_hat of N(mu, s2 I) from VDM's normalized gamma input."""

    def __init__(self, config, mu, s2):
        super().__init__()
        self.c, self.mu, self.s2 = config, mu, s2

    def forward(self, z, t):
        return _exact_eps(z, self.c.gamma_min + t * (self.c.gamma_max - self.c.gamma_min), self.mu, self.s2)


class DDPMExact(nn.Module):
    """eps_hat of N(mu, s2 I) at continuous t, through the model's own interpolated log-SNR."""

    def __init__(self, mu, s2):
        super().__init__()
        self.mu, self.s2, self.schedule = mu, s2, None
        self.dummy = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, z, t):
        return _exact_eps(z, self.schedule.log_snr(t)[0], self.mu, self.s2)


MU, S2 = torch.tensor([0.3, -0.4], dtype=F64), 0.25
Y = torch.tensor([[0.5, -0.1], [-1.0, 0.7], [0.2, 0.2]], dtype=F64)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_vdm_ode_of_gaussian_data_is_the_closed_form(scale):
    config = VDMConfig(gamma_min=-6.0, gamma_max=6.0, schedule="linear", learn_endpoints=False, fourier=(),
                       scale=scale)
    m = VDM(config, levels=None, shape=(2,), net=VDMExact(config, MU, S2)).double().eval()
    b = m.bound(Y * scale, estimator="ode", options={"check": 3})
    ends = [math.sqrt(1 / (1 + math.exp(s * g))) for g in (-6.0, 6.0) for s in (1, -1)]
    prior, div = closed_form(Y, MU, S2, *ends)
    torch.testing.assert_close(b.terms["prior"], prior, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.terms["divergence"], div, rtol=1e-4, atol=1e-4)
    assert set(b.terms) == ({"prior", "divergence"} | ({"scale"} if scale != 1 else set()))
    torch.testing.assert_close(b.nats, prior + div + 2 * math.log(scale), rtol=1e-4, atol=1e-4)


def test_ddpm_ode_runs_on_the_interpolated_log_snr_and_is_the_closed_form():
    """The net sees continuous t and the drift uses the interpolation's slope: a slope off by the
    factor T, or the process read at the wrong end, moves the result."""
    net = DDPMExact(MU, S2)
    m = Diffusion(net, levels=None, shape=(2,), timesteps=1000, schedule="linear").double().eval()
    net.schedule = m.schedule
    abar = m.schedule.alpha_bar
    a0, a1 = abar[1].sqrt().item(), abar[-1].sqrt().item()
    prior, div = closed_form(Y, MU, S2, a0, math.sqrt(1 - a0 ** 2), a1, math.sqrt(1 - a1 ** 2))
    b = m.bound(Y, estimator="ode", options={"check": 0, "rtol": 1e-7, "atol": 1e-7})
    torch.testing.assert_close(b.terms["prior"], prior, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.terms["divergence"], div, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="no options"):
        m.bound(Y, estimator="full", options={"rtol": 1e-3})


def test_interpolated_log_snr_hits_the_steps_and_its_slope_is_the_derivative():
    m = Diffusion(nn.Identity(), levels=None, shape=(2,), timesteps=20, schedule="cosine")
    t = torch.arange(1, 21, dtype=F64) / 20
    g, _ = m.schedule.log_snr(t)
    abar = m.schedule.alpha_bar[1:]
    torch.testing.assert_close(g, torch.log((1 - abar) / abar))
    u = torch.tensor([0.123, 0.5, 0.77], dtype=F64)
    h = 1e-6
    numeric = (m.schedule.log_snr(u + h)[0] - m.schedule.log_snr(u - h)[0]) / (2 * h)
    torch.testing.assert_close(m.schedule.log_snr(u)[1], numeric, rtol=1e-5, atol=1e-5)


def test_vdm_decoder_dequantization_is_above_minus_log_p_by_quadrature():
    """1-D, K = 4 levels: -log P(x) = -log int p_flow(z) P(x | z) dz by quadrature over z; the
    decoder-dequantized bound E_q[-log P(x|z) + log q(z|x) - log p_flow(z)] matches its own quadrature
    (so a dropped or flipped term fails) and lies above -log P(x)."""
    torch.manual_seed(0)
    m = build("vdm", {"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8, "fourier": [],
                      "gamma_min": -2.0}, 4, (1,))  # alpha_0 = 0.94: the decoder must rescale z_0
    m = m.double().eval()
    grid = torch.linspace(-2.0, 2.0, 641, dtype=F64)[:, None]
    dz = (grid[1, 0] - grid[0, 0]).item()
    fast = {"check": 0, "rtol": 1e-4, "atol": 1e-4}
    flow_nll = ode_bound(m.flow(), grid, levels=None, probes=None, options=fast).nats
    alpha, sigma = m.flow().alpha_sigma(0.0)
    n = 200
    x = torch.arange(4).repeat_interleave(n)[:, None]
    b = m.bound(x, estimator="ode", options={"dequantization": "decoder", **fast},
                generator=torch.Generator().manual_seed(0))
    assert set(b.terms) == {"prior", "divergence", "reconstruction", "dequantization"}
    for level in range(4):
        g0 = m.schedule.endpoints()[0].item()  # the decoder written out (VDM App. C), not the model's code
        centres = torch.linspace(-1, 1, 4, dtype=F64)
        logits = -0.5 * (grid / alpha - centres) ** 2 * math.exp(-g0)
        dec = -torch.log_softmax(logits, 1)[:, level]
        exact = -(torch.logsumexp(-flow_nll - dec, 0) + math.log(dz)).item()
        y = -1.0 + level * 2.0 / 3.0
        log_q = torch.distributions.Normal(alpha * y, sigma).log_prob(grid[:, 0])
        expected = (log_q.exp() * (dec + log_q + flow_nll)).sum().item() * dz
        torch.testing.assert_close(m._decoder_nll(torch.full((len(grid), 1), level), grid).detach(), dec)
        nats = b.nats[level * n:(level + 1) * n]
        mc, se = nats.mean().item(), nats.std().item() / math.sqrt(n)
        assert abs(mc - expected) < 4 * se and expected > exact, (level, mc, expected, exact, se)


def test_ddpm_decoder_dequantization_terms_are_the_bounds_reconstruction_and_minus_entropy_of_q():
    """E_q of the term reconstruction = the VLB's reconstruction (both -log p(x | x_1), x_1 ~ q(x_1 | x));
    E_q of the term dequantization = log q's expectation, -D/2 log(2 pi e (1 - abar_1))."""
    torch.manual_seed(0)
    m = build("diffusion", {"timesteps": 20, "mlp": {"width": 16, "depth": 1, "emb_dim": 8}}, 5, (2,)).eval()
    n = 400
    x = torch.tensor([[1, 3]]).repeat(n, 1)
    with torch.no_grad():
        b = m.bound(x, estimator="ode", options={"dequantization": "decoder", "rtol": 1e-3, "atol": 1e-3,
                                                  "check": 0}, generator=torch.Generator().manual_seed(0))
        vlb = m.bound(x, estimator="mc", samples=1, generator=torch.Generator().manual_seed(1))
    entropy = math.log(2 * math.pi * math.e * (1 - m.schedule.alpha_bar[1].item()))  # D = 2
    for term, ref in (("reconstruction", vlb.terms["reconstruction"].mean().item()),
                      ("dequantization", -entropy)):
        v = b.terms[term]
        se = math.hypot(v.std().item(), vlb.terms["reconstruction"].std().item()) / math.sqrt(n)
        assert abs(v.mean().item() - ref) < 4 * se + 1e-9, (term, v.mean().item(), ref, se)


@pytest.mark.parametrize("family, dequantization", [("vdm", "uniform"), ("diffusion", "decoder")])
def test_digits_shaped_models_use_hutchinson_with_its_variance(family, dequantization):
    """D = 64 > exact_dims: Hutchinson with k = 3 probes and its variance; both dequantizations."""
    options = ({"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8} if family == "vdm"
               else {"net": "mlp", "timesteps": 20, "mlp": {"width": 16, "depth": 1, "emb_dim": 8}})
    torch.manual_seed(0)
    m = build(family, options, 17, (1, 8, 8)).eval()
    x = torch.randint(0, 17, (3, 1, 8, 8))
    with torch.no_grad():
        b = m.bound(x, estimator="ode", samples=3, generator=torch.Generator().manual_seed(0),
                    options={"rtol": 1e-3, "atol": 1e-3, "check": 0, "dequantization": dequantization})
    assert b.estimator == "ode-dopri5-rtol=0.001"
    assert b.variance is not None and bool((b.variance > 0).all()) and bool(torch.isfinite(b.nats).all())
    if dequantization == "uniform":
        assert set(b.terms) == {"prior", "divergence", "dequantization"}
        expect = torch.full((3,), -64 * math.log(2 / 16), dtype=F64)
        torch.testing.assert_close(b.terms["dequantization"], expect)
    else:
        assert set(b.terms) == {"prior", "divergence", "reconstruction", "dequantization"}


def test_eval_command_scores_a_run_with_the_ode(tmp_path, capsys, request):
    request.addfinalizer(lambda: torch.set_flush_denormal(False))  # a run flushes them process-wide
    d = tmp_path / "vdm"
    args = ["train", "vdm", "--data", "digits", "--steps", "2", "--eval-every", "2", "--set", "model.net=mlp",
            "--set", "model.width=16", "--set", "model.depth=1", "--set", "model.schedule_hidden=8",
            "--set", "model.fourier=[]", "--set", "model.bound_samples=1", "--set", "num_samples=4",
            "--run-dir", str(d), "--json"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", str(d), "--estimator", "ode", "--samples", "1", "--ode", "rtol=1e-3",
                 "--ode", "atol=1e-3", "--split", "valid", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the default dequantization (auto) uses the family's decoder: its reconstruction term is there
    assert out["estimator"] == "ode-dopri5-rtol=0.001" and set(out["terms"]) == {"prior", "divergence",
                                                                                 "reconstruction",
                                                                                 "dequantization"}
    nfe = out["extras"]["nfe"]["value"]  # a count, not scaled to bits/dim
    assert nfe >= 8 and nfe == int(nfe)
    assert main(["eval", str(d), "--estimator", "ode", "--ode", "rtl=1"]) == 2
    assert "Unknown option ode.rtl" in capsys.readouterr().err
