"""digits: exactly the split benchmarks.md fixes, from scikit-learn's bundled images."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lowerbound.data import available, load
from lowerbound.errors import UserError


def test_digits_split_is_the_benchmark_split():
    ds = load("digits")
    images = load_digits().images.astype(np.int64)
    perm = np.random.default_rng(0).permutation(1797)
    assert ds.levels == 17 and ds.shape == (1, 8, 8) and ds.dims == 64
    assert ds.train.dtype == torch.long and ds.train.shape == (1437, 1, 8, 8)
    assert np.array_equal(ds.test[:, 0].numpy(), images[perm[:360]])
    assert np.array_equal(ds.train[:, 0].numpy(), images[perm[360:]])
    assert int(ds.train.min()) == 0 and int(ds.train.max()) == 16


def test_registry_lists_every_loader_and_refuses_unknown_names():
    names = set(available())
    assert {"digits", "toy2d", "mixture", "mnist", "fashion-mnist", "cifar10", "npy", "png"} <= names
    with pytest.raises(UserError, match="Unknown data set 'nope'; choose one of: cifar10, digits"):
        load("nope")
    with pytest.raises(UserError, match="takes no options"):
        load("digits", levels=3)
