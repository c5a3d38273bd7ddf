"""The probability-flow ODE likelihood (models/diffusion/ode.py) against closed forms.

Gaussian data N(mu, S) with its exact eps plugged in as the model: the flow maps the marginal
N(alpha_t mu, Sigma_t), Sigma_t = alpha_t^2 S + sigma_t^2 I, of t0 onto that of t1 linearly, so the
endpoint is z_1 = alpha_1 mu + Sigma_1^(1/2) Sigma_0^(-1/2) (y - alpha_0 mu), the prior term is
-log N(z_1; 0, I) and the divergence term is 0.5 (log det Sigma_0 - log det Sigma_1), for every y.
With fixed probes v, Hutchinson's integral is v^T M v, M = 0.5 (log Sigma_1 - log Sigma_0).
"""

import math

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.models.diffusion.ode import Flow, ODEFailed, ODEOptions, ode_bound, rademacher, solve

F64 = torch.float64
G0, G1 = -6.0, 7.0


def _gamma(t):
    """A curved increasing schedule on [0, 1], so that gamma' is not a constant."""
    u = 0.5 * (t + t * t)
    return G0 + (G1 - G0) * u, (G1 - G0) * (0.5 + t)


def _sigma(t: float, cov: torch.Tensor) -> torch.Tensor:
    g = _gamma(torch.tensor([t], dtype=F64))[0]
    a2, s2 = torch.sigmoid(-g), torch.sigmoid(g)
    return a2 * cov + s2 * torch.eye(cov.shape[0], dtype=F64)


def gaussian_flow(mu: torch.Tensor, cov: torch.Tensor) -> Flow:
    """The exact eps_hat = sigma_t Sigma_t^{-1} (z - alpha_t mu) of data N(mu, cov), as a Flow."""
    evals, q = torch.linalg.eigh(cov)

    def eps(z, t, gamma):
        a2, s2 = torch.sigmoid(-gamma)[:, None], torch.sigmoid(gamma)[:, None]
        r = (z.flatten(1) - a2.sqrt() * mu) @ q
        return (((r / (a2 * evals + s2)) @ q.T) * s2.sqrt()).view_as(z)

    return Flow(_gamma, eps, 0.0, 1.0)


def _sqrtm(m: torch.Tensor, power: float) -> torch.Tensor:
    evals, q = torch.linalg.eigh(m)
    return q @ torch.diag(evals ** power) @ q.T


def closed_form(y: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> dict[str, torch.Tensor]:
    s0, s1 = _sigma(0.0, cov), _sigma(1.0, cov)
    a0, a1 = (torch.sigmoid(-_gamma(torch.tensor([t], dtype=F64))[0]).sqrt() for t in (0.0, 1.0))
    z1 = a1 * mu + (y - a0 * mu) @ (_sqrtm(s1, 0.5) @ _sqrtm(s0, -0.5)).T
    d = y.shape[1]
    prior = 0.5 * z1.pow(2).sum(1) + 0.5 * d * math.log(2 * math.pi)
    div = 0.5 * (torch.logdet(s0) - torch.logdet(s1))
    return {"prior": prior, "divergence": div.expand(len(y)), "M": 0.5 * (_log_m(s1) - _log_m(s0))}


def _log_m(m):
    evals, q = torch.linalg.eigh(m)
    return q @ torch.diag(evals.log()) @ q.T


def _full_cov(d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    return 0.3 * a @ a.T / d + 0.05 * torch.eye(d, dtype=F64)


@pytest.mark.parametrize("d", [1, 4])
def test_ode_log_density_of_gaussian_data_equals_closed_form(d):
    """Catches: integrating prior -> data, a flipped sign of the drift or of either term, gamma' left
    out, the score's sign; the endpoint is checked through the prior term."""
    mu = torch.linspace(-0.5, 0.4, d, dtype=F64)
    cov = 0.3 ** 2 * torch.eye(d, dtype=F64)
    y = torch.tensor([[0.1], [-0.7], [1.2]], dtype=F64).expand(3, d) + 0.1 * torch.arange(d, dtype=F64)
    b = ode_bound(gaussian_flow(mu, cov), y.clone(), levels=None, probes=None, options={"check": 3})
    ref = closed_form(y, mu, cov)
    assert b.estimator == "ode-dopri5-rtol=1e-05" and set(b.terms) == {"prior", "divergence"}
    torch.testing.assert_close(b.terms["prior"], ref["prior"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.terms["divergence"], ref["divergence"], rtol=1e-4, atol=1e-4)
    assert b.variance is None and b.extras["nfe"][0] > 10 and b.extras["check_gap"][0] < 1e-3


def test_tighter_tolerance_converges_to_closed_form():
    mu, cov = torch.zeros(4, dtype=F64), _full_cov()
    y = torch.tensor([[0.3, -0.2, 0.5, 0.0]], dtype=F64)
    b = ode_bound(gaussian_flow(mu, cov), y, levels=None, probes=None,
                  options={"rtol": 1e-9, "atol": 1e-9, "check": 0})
    ref = closed_form(y, mu, cov)
    torch.testing.assert_close(b.nats, ref["prior"] + ref["divergence"], rtol=0, atol=1e-6)


def test_hutchinson_integrates_v_M_v_with_probes_fixed_for_the_whole_solve():
    """v^T M v with M non-diagonal: a solver that redraws probes inside one solve integrates a
    different quadratic form at each step and misses it."""
    mu, cov = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=F64), _full_cov()
    y = torch.tensor([[0.2, 0.1, -0.4, 0.3], [-0.5, 0.0, 0.2, 0.6]], dtype=F64)
    probes = rademacher(3, y, torch.Generator().manual_seed(1))
    flow = gaussian_flow(mu, cov)
    _, integral, _ = solve(flow, y, probes, ODEOptions(), exact=False)
    m = closed_form(y, mu, cov)["M"]
    expect = torch.einsum("kbi,ij,kbj->kb", probes, m, probes)
    assert (expect - torch.diagonal(m).sum()).abs().max() > 0.05  # the test can tell the probes apart
    torch.testing.assert_close(integral, expect, rtol=0, atol=2e-4)
    # the public path: probes drawn once from the generator, the same for the convergence check
    b = ode_bound(flow, y, levels=None, probes=3, options={"exact_dims": 0},
                  generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(b.terms["divergence"], -expect.mean(0), rtol=0, atol=2e-4)
    torch.testing.assert_close(b.variance, expect.var(0) / 3, rtol=1e-3, atol=1e-6)


def test_hutchinson_is_unbiased_for_the_exact_trace_with_its_variance():
    mu, cov = torch.zeros(4, dtype=F64), _full_cov(seed=3)
    y = torch.tensor([[0.3, -0.2, 0.5, 0.1]], dtype=F64)
    k = 400
    b = ode_bound(gaussian_flow(mu, cov), y, levels=None, probes=k, options={"exact_dims": 0, "check": 0},
                  generator=torch.Generator().manual_seed(2))
    ref = closed_form(y, mu, cov)
    se = b.variance.sqrt()
    assert (b.terms["divergence"] - ref["divergence"]).abs().item() < 4 * se.item()
    m = ref["M"]
    var_one = 2 * (m.pow(2).sum() - torch.diagonal(m).pow(2).sum())  # Rademacher: 2 sum_{i != j} M_ij^2
    assert 0.7 < (b.variance * k / var_one).item() < 1.3


def _quadrature(fn, lo, hi, n=24):
    nodes, weights = _gauss_legendre(n)
    x = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    return 0.5 * (hi - lo) * (weights * fn(x)).sum()


def _gauss_legendre(n):
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(n)
    return torch.tensor(x, dtype=F64), torch.tensor(w, dtype=F64)


def test_uniformly_dequantized_bound_is_above_minus_log_bin_mass_by_quadrature():
    """On K = 4 levels in 1-D: E_u[bound] equals (1/w) int_bin -log p - log w (quadrature of the ODE's
    own density) and lies above -log int_bin p; dropping the bin-width term, or its sign, fails."""
    levels, w = 4, 2.0 / 3.0
    flow = gaussian_flow(torch.tensor([0.2], dtype=F64), torch.tensor([[0.36]], dtype=F64))

    def nll(points):  # -log p_ODE at points [n], one batched solve
        return ode_bound(flow, points[:, None], levels=None, probes=None, options={"check": 0}).nats

    n = 200
    for level in range(levels):
        c = -1.0 + level * w
        nodes_nll = nll(torch.linspace(c - w / 2, c + w / 2, 9, dtype=F64))
        exact = -math.log(_quadrature(lambda x: torch.exp(-nll(x)), c - w / 2, c + w / 2).item())
        expected = _quadrature(nll, c - w / 2, c + w / 2).item() / w - math.log(w)
        y = torch.full((n, 1), c, dtype=F64)
        b = ode_bound(flow, y, levels=levels, probes=None, options={"check": 0},
                      generator=torch.Generator().manual_seed(level))
        assert set(b.terms) == {"prior", "divergence", "dequantization"}
        mc, se = b.nats.mean().item(), b.nats.std().item() / math.sqrt(n)
        assert abs(mc - expected) < 4 * se, (level, mc, expected, se)
        assert expected > exact and mc > exact - 3 * se
        assert nodes_nll.max() - nodes_nll.min() > 0.1  # the density varies over the bin: Jensen's gap > 0


def test_a_failed_solve_is_refused():
    def eps(z, t, gamma):  # eps_hat blows up at t = 0.5
        return z / (t[:, None] - 0.5) ** 2

    flow = Flow(_gamma, eps, 0.0, 1.0)
    with pytest.raises(ODEFailed):
        ode_bound(flow, torch.ones(2, 1, dtype=F64), levels=None, probes=None, options={"max_steps": 100})


def test_an_unconverged_solve_is_refused_and_a_converged_one_passes():
    """Two Euler steps differ from twenty by more than the batch's standard error: refused."""
    mu, cov = torch.zeros(2, dtype=F64), 0.1 * torch.eye(2, dtype=F64)
    y = torch.tensor([[0.1, 0.2], [0.12, 0.2], [0.1, 0.22]], dtype=F64)
    flow = gaussian_flow(mu, cov)
    with pytest.raises(ODEFailed, match="did not converge"):
        ode_bound(flow, y, levels=None, probes=None, options={"solver": "euler", "steps": 2})
    b = ode_bound(flow, y, levels=None, probes=None, options={"solver": "rk4", "steps": 40})
    assert b.estimator == "ode-rk4-steps=40"
    ref = closed_form(y, mu, cov)
    torch.testing.assert_close(b.nats, ref["prior"] + ref["divergence"], rtol=0, atol=1e-5)


def test_options_are_checked():
    with pytest.raises(UserError, match="Unknown option ode.rtl"):
        ODEOptions.make({"rtl": 1e-3})
    with pytest.raises(UserError, match="solver"):
        ODEOptions.make({"solver": "magic"})
    with pytest.raises(UserError, match="dequantization"):
        ODEOptions.make({"dequantization": "none"})
    assert ODEOptions.make({"rtol": 1e-3}).tighter().name == "ode-dopri5-rtol=0.0001"


def test_the_model_is_asked_only_between_t0_and_t1():
    """torchdiffeq's adaptive steps overshoot the end and interpolate back; the model must not be
    asked outside its schedule (a DDPM's log-SNR is not defined past t = 1)."""
    seen = []

    def gamma(t):
        seen.append(t)
        return _gamma(t)

    base = gaussian_flow(torch.zeros(2, dtype=F64), 0.2 * torch.eye(2, dtype=F64))
    flow = Flow(gamma, base.eps, 0.0, 1.0)
    ode_bound(flow, torch.tensor([[0.3, -0.1]], dtype=F64), levels=None, probes=None, options={"check": 0})
    t = torch.cat(seen)
    assert t.min() >= 0.0 and t.max() <= 1.0 and t.max() > 1.0 - 1e-9
