"""`mixture:<d>`: a random Gaussian mixture in d dimensions, drawn from a seed, with its exact density.

A known-density benchmark with as much data as one asks for (benchmarks.md, toy2d-kl): the KL from
the truth to a model, E_p[log p(x) - log q(x)], is the distance, and 0 is the limit.

The mixture, from numpy.random.default_rng(seed):
    weights  w ~ Dirichlet(2, ..., 2)                         (K = `components`)
    means    mu_k ~ N(0, 2^2 I_d)
    scales   L_k lower triangular: diagonal exp(U(log 0.3, 0)), below it N(0, (0.3 / sqrt d)^2)
so Sigma_k = L_k L_k^T.  log_prob is exact (torch.distributions.MixtureSameFamily is kept beside the
truth as its reference); the entropy is Monte Carlo with its standard error.  Splits: n_train /
n_test draws from torch.Generator seeds 2*seed and 2*seed + 1, stored as float32 [N, d].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .._config import from_dict
from ..errors import UserError
from .base import Dataset, register
from .toy import sample_splits
from .truth import GaussianMixtureTruth

MAX_DIM = 4096


@functools.lru_cache(maxsize=16)
def random_mixture(dim: int, components: int = 8, seed: int = 0) -> GaussianMixtureTruth:
    """The mixture described in the module docstring (cached: its entropy is computed once)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(components, 2.0))
    means = rng.normal(0.0, 2.0, size=(components, dim))
    tril = np.tril(rng.normal(0.0, 0.3 / np.sqrt(dim), size=(components, dim, dim)), k=-1)
    diag = np.exp(rng.uniform(np.log(0.3), 0.0, size=(components, dim)))
    tril[:, np.arange(dim), np.arange(dim)] = diag
    truth = GaussianMixtureTruth(f"mixture:{dim}", torch.from_numpy(weights), torch.from_numpy(means),
                                 torch.from_numpy(tril))
    truth.mc_samples = 2**18  # d dimensions: d times the cost per draw of a 2-D truth
    return truth


@dataclass
class MixtureOptions:
    components: int = 8
    seed: int = 0
    n_train: int = 20000
    n_test: int = 5000

    def __post_init__(self) -> None:
        if self.components < 1:
            raise UserError(f"mixture needs at least one component, got components={self.components}.")
        if self.n_train < 1 or self.n_test < 1:
            raise UserError(f"mixture sizes must be positive, got n_train={self.n_train}, "
                            f"n_test={self.n_test}.")


def _parse_dim(arg: str | None) -> int:
    try:
        dim = int(arg) if arg is not None else -1
    except ValueError:
        dim = -1
    if not 1 <= dim <= MAX_DIM:
        raise UserError(f"Name the dimension of the mixture as mixture:<d> with d in 1..{MAX_DIM}, "
                        f"got {arg!r}.")
    return dim


@register("mixture", "random Gaussian mixture with exact density: mixture:<d>, continuous, "
                     "20000 train / 5000 test (options components, seed, n_train, n_test)")
def load_mixture(arg: str | None = None, **options) -> Dataset:
    dim = _parse_dim(arg)
    opts = from_dict(MixtureOptions, options, where="mixture")
    truth = random_mixture(dim, opts.components, opts.seed)
    train, test = sample_splits(truth, opts.n_train, opts.n_test, opts.seed)
    return Dataset(f"mixture:{dim}", train, test, levels=None, shape=(dim,), truth=truth,
                   info={"source": f"{opts.components}-component Gaussian mixture from "
                                   f"default_rng({opts.seed})",
                         "split": f"train seed {2 * opts.seed}, test seed {2 * opts.seed + 1} "
                                  "(torch.Generator)"})
