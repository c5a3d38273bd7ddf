"""The dequantization accounting of prob.units against closed forms: the bin width 2 / (K - 1) on the
[-1, 1] scale, and the identity that a density uniform over the K bins bounds log P(x) = -D log K exactly
once D log(bin width) is added (the uniform noise then changes nothing)."""

import math

import pytest
import torch

from lowerbound.prob.units import bin_width, dequantization_log_jacobian, dequantize


@pytest.mark.parametrize("levels, dims", [(256, 3), (2, 5), (17, 1)])
def test_log_jacobian_is_dims_times_the_log_bin_width(levels, dims):
    assert dequantization_log_jacobian(levels, dims) == pytest.approx(dims * math.log(2.0 / (levels - 1)),
                                                                       rel=1e-14)
    assert dequantization_log_jacobian(levels, dims) == pytest.approx(dims * math.log(bin_width(levels)),
                                                                       rel=1e-14)


@pytest.mark.parametrize("levels", [2, 4, 256])
def test_a_uniform_density_over_the_bins_gives_the_exact_discrete_log_probability(levels):
    dims = 6
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, levels, (50, dims), generator=g)
    y = dequantize(x, levels, generator=g).double()
    half = bin_width(levels) / 2.0  # the K bins cover [-1 - w/2, 1 + w/2]: length K w per axis
    uniform = torch.distributions.Uniform(torch.tensor(-1.0 - half, dtype=torch.float64),
                                          torch.tensor(1.0 + half, dtype=torch.float64))
    bound = uniform.log_prob(y).sum(-1) + dequantization_log_jacobian(levels, dims)
    torch.testing.assert_close(bound, torch.full((50,), -dims * math.log(levels), dtype=torch.float64),
                               rtol=0, atol=1e-9)
