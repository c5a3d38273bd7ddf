"""Estimate.from_samples at its smallest sample sizes, against the standard error computed by hand:
std / sqrt(n) with the unbiased std, defined from n = 2 on; one sample says nothing about its spread."""

import math

import torch

from lowerbound.prob import Estimate


def test_two_samples_carry_their_standard_error():
    # samples 1 and 3: mean 2, unbiased variance ((1 - 2)^2 + (3 - 2)^2) / 1 = 2, stderr sqrt(2 / 2) = 1
    est = Estimate.from_samples(torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert est.value.item() == 2.0 and est.num_samples == 2 and not est.exact
    assert est.stderr.item() == 1.0


def test_two_samples_along_a_later_axis():
    samples = torch.tensor([[0.0, 4.0], [2.0, 2.0], [-1.0, 5.0]], dtype=torch.float64)
    est = Estimate.from_samples(samples, dim=1)
    torch.testing.assert_close(est.value, torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    # |a - b| / 2 is the stderr of the mean of two samples a, b: sqrt((a - b)^2 / 2) / sqrt(2)
    torch.testing.assert_close(est.stderr, torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64))


def test_one_sample_has_an_infinite_stderr():
    est = Estimate.from_samples(torch.tensor([[1.5, -2.0]]))
    assert est.value.tolist() == [1.5, -2.0] and est.num_samples == 1
    assert est.stderr.eq(math.inf).all()
