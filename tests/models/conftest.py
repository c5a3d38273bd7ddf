"""Shared fixtures of the model tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def x_star():
    """One example of 17 levels, [1, 1, 2, 3], holding both outer levels: the point mass of the diffusion
    tests (diffusion_oracles.point_model)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 17, (1, 1, 2, 3), generator=g)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 16  # both outer bins
    return x
