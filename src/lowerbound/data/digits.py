"""scikit-learn's bundled 8x8 digits as K = 17 levels, split as benchmarks.md fixes it.

perm = numpy.random.default_rng(0).permutation(1797); test = perm[:360], train = perm[360:].
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from .base import Dataset, register


@register("digits", "scikit-learn's 8x8 handwritten digits, 17 levels, 1437 train / 360 test")
def load_digits(arg: str | None = None, **options) -> Dataset:
    if arg is not None or options:
        raise UserError(f"The digits data set takes no options, got {arg or sorted(options)}.")
    from sklearn.datasets import load_digits as sk_load

    bunch = sk_load()
    images = bunch.images.astype(np.int64)  # [1797, 8, 8], values 0..16
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    perm = np.random.default_rng(0).permutation(len(images))
    x = torch.from_numpy(images).unsqueeze(1)  # [N, 1, 8, 8]
    test, train = x[perm[:360]], x[perm[360:]]
    return Dataset("digits", train, test, levels=17, shape=(1, 8, 8),
                   train_labels=labels[perm[360:]], test_labels=labels[perm[:360]],
                   info={"source": "sklearn.datasets.load_digits (UCI optdigits test set)",
                         "split": "test = default_rng(0).permutation(1797)[:360], train = the rest"})
