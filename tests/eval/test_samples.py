"""Sample metrics against their oracles: identities (a set against itself), a reference computation
(scipy's matrix square root), unbiasedness (KID over disjoint subsets of one distribution), and
known extremes (uniform noise, copies of the train split)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from lowerbound.data import load
from lowerbound.errors import UserError
from lowerbound.eval import sample_quality
from lowerbound.eval.features import for_dataset
from lowerbound.eval.samples import frechet_distance, kid, prdc


@pytest.fixture(scope="module")
def digits():
    return load("digits")


@pytest.fixture(scope="module")
def features(digits, tmp_path_factory):
    return for_dataset(digits, directory=tmp_path_factory.mktemp("features"))


def test_feature_net_is_a_classifier_named_and_hashed(features):
    d = features.describe()
    assert d["kind"] == "classifier" and d["dims"] == 64
    assert d["hash"].startswith("sha256:") and "(weights)" in d["hash"] and "(data)" in d["hash"]
    assert d["test_accuracy"] > 0.9  # it has learned the digits (reported only, never selected on)


def test_test_split_against_itself(digits, features):
    """Identical sets: FD is exactly 0 in exact arithmetic (the plug-in estimator's upward bias,
    about Tr(S)(1/n + 1/m), is for independent draws only); we allow 1e-6 of round-off in the
    eigenvalues.  Every test point lies in its own ball, so precision = recall = coverage = 1."""
    m = sample_quality(digits.test, digits, features=features)
    assert m["frechet_distance"] < 1e-6
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert m["feature_net"]["hash"] == features.hash
    assert 0.8 < m["memorization"] < 1.25  # fresh examples of the data distribution: about 1
    assert m["exact_copies"] == 0.0


def test_uniform_noise_has_precision_near_zero(digits, features):
    noise = torch.randint(0, digits.levels, (400, *digits.shape), generator=torch.Generator().manual_seed(0))
    m = sample_quality(noise, digits, features=features)
    assert m["precision"] < 0.2 and m["coverage"] < 0.2
    assert m["frechet_distance"] > 100 * sample_quality(digits.train[:400], digits,
                                                         features=features)["frechet_distance"]
    assert m["kid"]["mean"] > 10 * m["kid"]["stderr"]


def test_copies_of_train_score_memorization_zero(digits, features):
    m = sample_quality(digits.train[:300], digits, features=features)
    assert m["memorization"] == 0.0 and m["exact_copies"] == 1.0


def test_frechet_distance_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 4, generator=g, dtype=torch.float64)
    b = torch.randn(400, 4, generator=g, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.5, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 0.5]], dtype=torch.float64) + 0.3
    ma, mb = a.mean(0).numpy(), b.mean(0).numpy()
    sa, sb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = ((ma - mb) ** 2).sum() + np.trace(sa + sb - 2 * scipy.linalg.sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_kid_is_unbiased_over_disjoint_subsets(digits, features):
    """Two disjoint halves of train are one distribution: the mean of 20 independent KID estimates
    is 0 within 3 standard errors (a biased V-statistic, with the kernel's diagonal, fails)."""
    f = features(digits.train)
    g = torch.Generator().manual_seed(3)
    means = []
    for s in range(20):
        p = torch.randperm(len(f), generator=g)
        means.append(kid(f[p[:700]], f[p[700:1400]], subsets=10, seed=s)["mean"])
    means = torch.tensor(means, dtype=torch.float64)
    assert abs(means.mean()) < 3 * means.std() / 20 ** 0.5
    noise = features(torch.randint(0, 17, (700, 1, 8, 8), generator=g))
    assert kid(f[:700], noise)["mean"] > 1.0  # and it is far from 0 between different distributions


def test_ties_count_as_inside_a_ball():
    """Each reference point has 5 exact duplicates, so its k = 5 ball has radius 0: samples equal to
    reference points lie on the boundary and must count (precision, coverage 1); points elsewhere
    do not (precision 0)."""
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    real = points.repeat_interleave(6, 0)
    out = prdc(real, points.repeat(3, 1), k=5)
    assert out["precision"][0] == 1.0 and out["coverage"][0] == 1.0
    assert prdc(real, points.repeat(3, 1) + 0.1, k=5)["precision"][0] == 0.0
    # with 4 duplicates the 5th neighbour (the point itself excluded) is another cluster, 3 away
    assert prdc(points.repeat_interleave(5, 0), points.repeat(3, 1) + 0.1, k=5)["precision"][0] == 1.0


def test_raw_features_where_there_are_no_labels():
    data = load("toy2d:8gaussians")
    m = sample_quality(data.test[:300], data, x=data.test[:300], split="test")
    assert m["feature_net"]["kind"] == "raw" and m["frechet_distance"] < 1e-9


def test_bad_samples_are_refused(digits, features):
    with pytest.raises(UserError, match="shape"):
        sample_quality(torch.zeros(50, 64, dtype=torch.long), digits, features=features)
