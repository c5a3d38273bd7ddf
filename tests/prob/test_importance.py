"""LogMeanExp, the streaming importance-weighted bound, against the one-shot formulas."""

import math

import torch

from lowerbound.prob.importance import LogMeanExp


def test_chunks_give_the_one_shot_bound_mean_and_delta_method_variance():
    log_w = torch.randn(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    acc = LogMeanExp()
    for part in log_w.split([1, 30, 69]):
        acc.add(part)
    w = log_w.exp()
    torch.testing.assert_close(acc.bound(), -(w.mean(0)).log())
    torch.testing.assert_close(acc.plain_bound(), -log_w.mean(0))
    ess = w.sum(0) ** 2 / (w**2).sum(0)
    torch.testing.assert_close(acc.variance(), (100 / ess - 1) / 99)
    assert (acc.plain_bound() >= acc.bound()).all()  # Jensen


def test_one_draw_is_the_plain_bound_without_a_variance():
    acc = LogMeanExp()
    acc.add(torch.tensor([[math.log(0.25)]], dtype=torch.float64))
    assert acc.variance() is None and float(acc.bound()) == float(acc.plain_bound())
    assert abs(float(acc.bound()) - math.log(4)) < 1e-12
