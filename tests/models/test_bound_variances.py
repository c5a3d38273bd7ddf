"""The variances the diffusion bounds report, at their smallest sizes, against oracles:

- vlb.neighbour_variance (von Neumann et al. 1941's successive differences with the end terms counted
  in full) is a quadratic form in the rows; on unit rows it gives the weight each term's variance has in
  its expectation, which its docstring states (ends once, their neighbours 1.5 times, others once), and a
  hand-computed example;
- the DDPM's mc estimator with k = 2 steps (Ho et al. 2020, eq. 5): the reported variance is the
  variance of the mean of 2 draws of (T - 1) L_t, whose exact value the point-mass chain gives in closed
  form (diffusion_oracles.closed_form_bound);
- the VDM's mc with k = 2 and lds with k = 4 (2 independent lattices; Kingma et al. 2021, App. I.1): over
  many copies of one example, the mean reported variance matches the spread of the estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lowerbound.models.diffusion.vdm import VDM, VDMConfig
from lowerbound.models.diffusion.vlb import neighbour_variance

from .diffusion_oracles import closed_form_bound, point_model

F64 = torch.float64


@pytest.mark.parametrize("n, weights", [
    (2, [1.5, 1.5]),                 # one difference: half of it, plus half again at each end
    (3, [1.0, 2.0, 1.0]),            # the middle row neighbours both ends
    (5, [1.0, 1.5, 1.0, 1.5, 1.0]),
    (6, [1.0, 1.5, 1.0, 1.0, 1.5, 1.0]),
])
def test_neighbour_variance_weighs_each_terms_variance_as_stated(n, weights):
    """For independent rows of variances V_t, E = sum_t w_t V_t with w_t the form's value on unit row t."""
    eye = torch.eye(n, dtype=F64)  # column j: row j is 1, the others 0
    torch.testing.assert_close(neighbour_variance(eye), torch.tensor(weights, dtype=F64), rtol=0, atol=1e-15)


def test_neighbour_variance_of_a_hand_computed_example():
    rows = torch.tensor([[0.0, 5.0], [1.0, 5.0], [3.0, 5.0], [6.0, 5.0]], dtype=F64)
    # differences 1, 2, 3: (1 + 4 + 9) / 2 + (1 + 9) / 2 = 12; a constant column has no variance
    torch.testing.assert_close(neighbour_variance(rows), torch.tensor([12.0, 0.0], dtype=F64))


def test_full_bound_with_two_kl_terms_reports_its_neighbour_variance(x_star):
    """T = 3: rows L_2, L_3, the smallest chain with a full-bound variance; the point mass's terms are
    exact, so the variance is neighbour_variance of the closed-form terms (the decoder's two draws agree)."""
    model = point_model(x_star, variance="fixed_small", delta=0.2, T=3, schedule="cosine")
    _, steps, _ = closed_form_bound(model.schedule, 17, x_star[0].numpy(), "fixed_small", 0.2, per_step=True)
    with torch.no_grad():
        b = model.bound(x_star, generator=torch.Generator().manual_seed(0))
    want = neighbour_variance(torch.tensor(steps, dtype=F64)[:, None])
    torch.testing.assert_close(b.variance, want, rtol=1e-6, atol=1e-9)


def test_ddpm_mc_with_two_steps_reports_the_variance_of_a_mean_of_two(x_star):
    """Point mass, T = 4: a draw is (T - 1) L_t with t uniform on 2..4 and L_t exact (the decoder is
    exact too), so the variance of the mean of k = 2 draws is np.var((T - 1) L) / 2; the mean over n copies
    of the reported one (each (a - b)^2 / 4, unbiased) is within 4 of its standard errors of it."""
    model = point_model(x_star, variance="fixed_small", delta=0.2, T=4, schedule="cosine")
    _, steps, _ = closed_form_bound(model.schedule, 17, x_star[0].numpy(), "fixed_small", 0.2, per_step=True)
    true_var = np.var(3 * steps) / 2
    n = 2000
    with torch.no_grad():
        b = model.bound(x_star.repeat(n, 1, 1, 1), estimator="mc", samples=2,
                        generator=torch.Generator().manual_seed(4))
    assert b.estimator == "vlb-mc-k=2" and b.variance is not None
    v = b.variance
    assert abs(v.mean().item() - true_var) < 4 * v.std().item() / math.sqrt(n), (v.mean().item(), true_var)
    # and the spread of the estimates over the copies agrees with it
    assert b.terms["diffusion"].var().item() == pytest.approx(true_var, rel=0.15)


def _vdm():
    torch.manual_seed(0)
    config = VDMConfig(schedule_hidden=8, width=16, depth=1, emb_dim=8, fourier=())
    return VDM(config, levels=5, shape=(2,)).double()


@pytest.mark.parametrize("estimator, samples, name", [("mc", 2, "vdm-mc-k=2"), ("lds", 4, "vdm-lds-k=4")])
def test_vdm_with_two_groups_reports_a_variance_that_matches_the_spread(estimator, samples, name):
    """Two independent replicates (mc k = 2, or lds with 2 lattices): the reported variance (the two
    group means' sample variance / 2) is unbiased for the variance of the estimate, so over n copies of
    one example its mean agrees with the estimates' spread within 4 standard errors of the difference."""
    model, n = _vdm(), 3000
    x = torch.tensor([[1, 4]]).repeat(n, 1)
    with torch.no_grad():
        b = model.bound(x, estimator=estimator, samples=samples, generator=torch.Generator().manual_seed(1))
    assert b.estimator == name and b.variance is not None
    est, v = b.nats, b.variance
    spread = est.var().item()
    # standard errors of the two sides, from the fourth moments of the samples
    se_spread = math.sqrt(((est - est.mean()) ** 4).mean().item() - spread ** 2) / math.sqrt(n)
    se_mean = v.std().item() / math.sqrt(n)
    assert abs(v.mean().item() - spread) < 4 * math.hypot(se_spread, se_mean), (v.mean().item(), spread)
