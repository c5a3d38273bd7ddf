"""The coverage check every estimator that reports a standard error must pass: over independent repeats,
the 95% interval value +- 1.96 stderr holds the exact value as often as 95% does, within binomial error."""

import math

import torch

Z95 = 1.959963984540054


def assert_coverage(values, stderrs, exact, level=0.95, sigmas=3.0):
    """values, stderrs: [R] independent estimates and their reported errors; exact: scalar or [R].
    Fails when the share of intervals holding `exact` is more than `sigmas` binomial standard errors
    from `level`; returns that share."""
    values, stderrs = torch.as_tensor(values).double(), torch.as_tensor(stderrs).double()
    hits = ((values - torch.as_tensor(exact).double()).abs() <= Z95 * stderrs).double()
    n = hits.numel()
    share = hits.mean().item()
    tolerance = sigmas * math.sqrt(level * (1 - level) / n)
    assert abs(share - level) <= tolerance, f"coverage {share:.3f} in {n}, want {level} +- {tolerance:.3f}"
    return share
