"""Low-noise Monte Carlo over t (importance.py).  The DDPM bound's importance-sampled, stratified
estimator "is" against the full sum: exact per-step terms of a point mass (closed form) and a net that
reads x_t (quadrature), the draws' distribution against q, and the reported variance's coverage (it may
err high, never low).  The VDM's lattice estimator "lds" against Gaussian data's exact NLL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.models.diffusion import Diffusion
from lowerbound.models.diffusion.importance import lattice_times, log_bins, pilot_proposal, stratified_steps

from ..coverage import Z95, assert_coverage
from .diffusion_oracles import SmoothNet, closed_form_bound, point_model, quadrature_terms
from .test_vdm import ExactDenoiser
from .test_vdm import _model as _vdm_model

K = 17


def _point(x_star, T=50):
    """T = 50 cosine, eps off by 0.2: the terms L_2..L_T span orders of magnitude (q far from uniform)."""
    model = point_model(x_star, variance="fixed_small", delta=0.2, T=T, schedule="cosine")
    _, steps, _ = closed_form_bound(model.schedule, K, x_star[0].numpy(), "fixed_small", 0.2, per_step=True)
    return model, steps


@pytest.mark.parametrize("proposal", ["pilot", "history", "uniform"])
def test_is_estimator_is_unbiased_against_the_full_sum(x_star, proposal):
    """The mean over n copies of the estimate is within 4 standard errors (their spread) of the exact
    sum L_2 + ... + L_T; without the weight 1 / q_t, or with (T - 1) in its place, it is hundreds off."""
    model, steps = _point(x_star)
    if proposal == "history":  # a warm training sampler whose history is the exact L_t (and L_1 = 0)
        model.sampler.mode = "importance"
        model.sampler.history[1:] = torch.tensor(steps)[:, None]
        model.sampler.count.fill_(model.sampler.history.shape[1])
    n, k = 400, 4
    with torch.no_grad():
        b = model.bound(x_star.repeat(n, 1, 1, 1), estimator="is", samples=k, options={"proposal": proposal},
                        generator=torch.Generator().manual_seed(0))
    assert b.estimator == "vlb-is-k=4"
    d = b.terms["diffusion"]
    stderr = d.std().item() / math.sqrt(n)
    assert abs(d.mean().item() - steps.sum()) < 4 * stderr + 1e-9 * steps.sum(), (d.mean(), steps.sum())
    if proposal != "uniform":  # a good proposal: the spread is a small fraction of the uniform draws'
        assert d.std().item() < 0.2 * np.std((model.timesteps - 1) * steps) / math.sqrt(k)


def test_draws_follow_q_within_their_strata():
    q = torch.tensor([0.5, 0.05, 0.2, 0.25], dtype=torch.float64)  # steps 2..5
    k, n = 4, 20000
    s = stratified_steps(q, k, n, torch.Generator().manual_seed(0))
    freq = torch.bincount(s.flatten() - 2, minlength=4).double() / (k * n)
    assert ((freq - q).abs() < 4 * (q * (1 - q) / (k * n)).sqrt()).all(), freq
    # stratum j = [j/4, (j+1)/4) of the CDF [0.5, 0.55, 0.75, 1]: row 0 and 1 only step 2, row 3 only 5
    assert (s[0] == 2).all() and (s[1] == 2).all() and (s[3] == 5).all()
    assert set(s[2].tolist()) == {3, 4} and abs((s[2] == 3).double().mean().item() - 0.2) < 0.02


def test_pilot_proposal_follows_the_root_mean_square_of_the_terms(x_star):
    """With exact, deterministic terms, q_t is the floor plus (1 - floor) times each bin's term share."""
    model, steps = _point(x_star)
    exact = torch.tensor(steps)
    q = pilot_proposal(lambda e, t: exact[t - 2], 8, model.timesteps, 0.1, budget=64,
                       generator=torch.Generator().manual_seed(0))
    edges = log_bins(model.timesteps, 64)
    assert q.sum().item() == pytest.approx(1.0) and (q >= 0.1 / 49 - 1e-15).all()
    singles = [int(e) for e, f in zip(edges[:-1], edges[1:]) if f - e == 1]  # one-step bins: exact share
    w = torch.zeros(49, dtype=torch.float64)
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
        w[lo - 2:hi - 2] = exact[lo - 2:hi - 2].pow(2).mean().sqrt()  # bins filled by the pilot's rows
    for t in singles:
        want = 0.9 * exact[t - 2] / w.sum() + 0.1 / 49
        assert q[t - 2].item() == pytest.approx(want.item(), rel=0.35)  # other bins' rows vary


def test_pilot_weights_are_root_mean_squares_not_means():
    """T = 5: every bin is one step.  Step 2's rows are 0 or 2 (half each: rms sqrt 2, mean 1), step 3's
    always 1, steps 4-5's 0: q = (1 - floor) (sqrt 2, 1, 0, 0) / (1 + sqrt 2) + floor / 4."""
    def rows(example, step):
        half = (torch.arange(step.numel()) % 2).double() * 2
        return torch.where(step == 2, half, (step == 3).double())

    q = pilot_proposal(rows, 3, 5, 0.5, budget=40, generator=torch.Generator().manual_seed(0))
    want = 0.5 * torch.tensor([2 ** 0.5, 1.0, 0.0, 0.0], dtype=torch.float64) / (1 + 2 ** 0.5) + 0.125
    torch.testing.assert_close(q, want)


def test_is_variance_covers_the_quadrature_value():
    """A net that reads x_t: the mean is the quadrature value, and the reported variance's 95% interval
    (groups of 50 copies) holds it at least as often as 95% says (successive differences err high)."""
    levels, groups, size = 5, 200, 50
    model = Diffusion(SmoothNet("x0", False, levels), levels=levels, shape=(1,), timesteps=50,
                      schedule="cosine", parameterization="x0", variance="fixed_large")
    exact = sum(quadrature_terms(model.schedule, levels, 1, "x0", "fixed_large"))
    with torch.no_grad():
        b = model.bound(torch.ones(groups * size, 1, dtype=torch.long), estimator="is", samples=8,
                        generator=torch.Generator().manual_seed(0))
    nats = b.nats
    assert abs(nats.mean().item() - exact) < 4 * nats.std().item() / math.sqrt(nats.numel())
    means = nats.reshape(groups, size).mean(1)
    stderrs = b.variance.reshape(groups, size).sum(1).sqrt() / size
    share = ((means - exact).abs() <= Z95 * stderrs).double().mean().item()
    assert share >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / groups), share
    # and it is not wildly conservative: the reported variance within 2x of the spread over copies
    assert b.variance.mean().item() < 2.0 * nats.var().item()


def test_is_options_are_checked(x_star):
    model, _ = _point(x_star, T=4)
    for options in ({"proposal": "magic"}, {"floor": 0.0}, {"tries": 3}, {"proposal": "history"}):
        with pytest.raises(UserError):
            model.bound(x_star, estimator="is", options=options)
    with pytest.raises(UserError):
        model.bound(x_star, estimator="mc", options={"floor": 0.1})


# ---------------------------------------------------------------- VDM: randomly shifted lattices in t
def test_lattice_times_put_one_point_per_stratum_with_uniform_marginals():
    t = lattice_times(3, 8, 5000, torch.Generator().manual_seed(0))
    strata = torch.sort((t * 8).floor().long(), dim=1).values
    assert torch.equal(strata, torch.arange(8)[None, :, None].expand_as(strata))
    counts = torch.histc(t.flatten(), bins=10, min=0, max=1)
    assert ((counts - t.numel() / 10).abs() < 4 * math.sqrt(t.numel() * 0.09)).all()


def test_vdm_lds_is_unbiased_with_an_honest_variance_and_less_noise_than_mc():
    """Gaussian data and their exact denoiser: E[bound] = -log N(x; 0, s^2) (to ~1e-5 nats).  The
    replicate groups' interval, pooled over 50 copies, covers it as often as 95% says over 300 repeats
    (the i.i.d. formula var / k would over-cover here), and the lattice's spread is well below mc's."""
    s, d = 0.5, 3
    m = _vdm_model(None, (d,), lambda c: ExactDenoiser(c, torch.zeros(d, dtype=torch.float64), s),
                   schedule="linear", gamma_min=-12.0, gamma_max=12.0, learn_endpoints=False)
    x = torch.randn(1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * s
    truth = -torch.distributions.Normal(0.0, s).log_prob(x).sum().item()
    with torch.no_grad():
        b = m.bound(x.repeat(300 * 50, 1), estimator="lds", samples=8,
                    generator=torch.Generator().manual_seed(6))
        mc = m.bound(x.repeat(300 * 50, 1), estimator="mc", samples=8,
                     generator=torch.Generator().manual_seed(7))
    assert b.estimator == "vdm-lds-k=8"
    assert abs(b.nats.mean().item() - truth) < 4 * b.nats.std().item() / math.sqrt(b.nats.numel())
    assert_coverage(b.nats.reshape(300, 50).mean(1), b.variance.reshape(300, 50).sum(1).sqrt() / 50, truth)
    assert b.nats.var().item() < 0.8 * mc.nats.var().item()  # 0.69 measured


def test_vdm_lds_needs_two_groups():
    m = _vdm_model(17, (4,))
    with pytest.raises(UserError):
        m.bound(torch.zeros(2, 4, dtype=torch.long), estimator="lds", samples=1)
    assert m.bound(torch.zeros(2, 4, dtype=torch.long), estimator="lds", samples=9).estimator == "vdm-lds-k=8"
