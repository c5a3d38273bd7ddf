"""The DDPM noise schedule's refusal of betas outside (0, 1) (models/diffusion/schedule.py): at the edges
(exactly 0, exactly 1, just above 1, in [1, 2), negative) the UserError names the first bad value, and a
beta just inside the interval builds a chain whose constants are finite (Ho et al. 2020, eq. 4)."""

import math
import re

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.models.diffusion import Schedule


@pytest.mark.parametrize("betas, bad", [
    ([0.1, 1.0], "1"),          # exactly 1: alpha = 0 wipes out the data (abar_T = 0, log(1 - abar) = 0)
    ([0.1, 1.5, 0.2], "1.5"),   # in [1, 2): alpha < 0, sqrt(alpha) is NaN
    ([0.1, 1.0 + 1e-9], "1"),   # just above 1
    ([0.0, 0.1], "0"),          # exactly 0: no noise added at that step
    ([0.1, -0.25], "-0.25"),
    ([2.5], "2.5"),
])
def test_a_beta_outside_the_open_unit_interval_is_refused_by_name(betas, bad):
    with pytest.raises(UserError, match=rf"has a beta of {re.escape(bad)}, outside \(0, 1\)"):
        Schedule(torch.tensor(betas, dtype=torch.float64), name="given")


def test_the_first_bad_beta_is_the_one_named():
    with pytest.raises(UserError, match=r"beta of 1\.5, outside"):
        Schedule(torch.tensor([0.5, 1.5, 1.0, 3.0], dtype=torch.float64))


def test_betas_just_inside_the_interval_build_a_finite_chain():
    betas = torch.tensor([1e-12, 0.5, 1 - 1e-9], dtype=torch.float64)
    s = Schedule(betas)
    assert s.timesteps == 3
    # abar_t = prod (1 - beta): the closed form of the cumulative product
    assert s.alpha_bar[-1].item() == pytest.approx(math.prod(1 - b for b in betas.tolist()), rel=1e-12)
    for name in ("alpha_bar", "posterior_variance", "posterior_coef_x0", "posterior_coef_xt"):
        assert torch.isfinite(getattr(s, name)).all(), name
    assert all(torch.isfinite(v[1:]).all() for v in s.log_variance_range())
