"""eval.likelihood against reference computations: the mean and std/sqrt(n) of per-example bounds,
the estimator's own share reported for Monte Carlo bounds, determinism under a seed, and the paired KL
to a known truth (0 for the truth itself, the closed-form Gaussian KL otherwise)."""

import json
import math

import pytest
import torch

from lowerbound.data import load
from lowerbound.data.base import Dataset
from lowerbound.errors import UserError
from lowerbound.eval import likelihood
from lowerbound.eval.likelihood import batch_generator
from lowerbound.models import registry
from lowerbound.models.base import GenerativeModel

from ..coverage import Z95, assert_coverage


def discrete_data(levels=6, shape=(1, 2, 2)):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(700, 1, generator=g) * 1.5 + torch.randn(700, 4, generator=g) * 0.7
    x = (base + levels / 2).round().clamp(0, levels - 1).long().reshape(700, *shape)
    return Dataset("toy-levels", x[:500], x[500:], levels, shape)


class GaussianTruth:
    """N(mean, I) in 2-D: the known density of a synthetic continuous data set."""

    def __init__(self, mean):
        self.dist = torch.distributions.MultivariateNormal(torch.tensor(mean, dtype=torch.float64),
                                                           torch.eye(2, dtype=torch.float64))

    def log_prob(self, x):
        return self.dist.log_prob(x.double())

    def entropy(self):
        return self.dist.entropy()


def continuous_data():
    truth = GaussianTruth([1.0, -1.0])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 2, generator=g, dtype=torch.float64) + truth.dist.mean
    return Dataset("toy-gauss", x[:1000].float(), x[1000:].float(), None, (2,), truth=truth)


def test_exact_bound_mean_and_stderr_over_examples():
    data = discrete_data()
    model = registry.build("categorical", {}, data.levels, data.shape)
    model.fit(data.train, progress=False)
    r = likelihood(model, data, progress=False, batch_size=64)
    bpd = model.bound(data.test).nats.double() / (4 * math.log(2))
    assert r.unit == "bits/dim" and r.exact and r.estimator == "exact" and r.n == 200
    assert r.value == pytest.approx(bpd.mean().item(), abs=1e-6)
    assert r.stderr == pytest.approx(bpd.std().item() / math.sqrt(200), rel=1e-6)
    lo, hi = r.interval
    assert lo == pytest.approx(r.value - 1.959964 * r.stderr, abs=1e-6) and hi > r.value
    assert r.terms["nll"][0] == pytest.approx(r.value, abs=1e-6)
    assert r.kl_to_truth is None and r.per_example.shape == (200,)
    # an exact bound does not depend on the batching
    torch.testing.assert_close(likelihood(model, data, progress=False, batch_size=7).per_example,
                               r.per_example)
    d = json.loads(json.dumps(r.to_dict()))
    assert {"bits_per_dim", "terms", "estimator", "exact", "stderr", "interval", "n"} <= set(d)
    assert "exact" in r.table() and "nll" in r.table()


def test_monte_carlo_bound_stderr_is_the_spread_over_examples_and_is_seeded():
    data = discrete_data()
    model = registry.build("gaussian", {}, data.levels, data.shape)
    model.fit(data.train, progress=False)
    r = likelihood(model, data, samples=3, batch_size=256, seed=5, progress=False)
    assert r.estimator == "dequantization-s=3" and not r.exact
    # reference: the same draws (one batch, generator from (seed, 0)) and the formula by hand
    b = model.bound(data.test, samples=3, generator=batch_generator(5, 0, torch.device("cpu")))
    scale = 1 / (4 * math.log(2))
    v = b.nats.double() * scale
    # each example's own estimator noise is already in the spread over examples: std / sqrt(n)
    assert r.value == pytest.approx(v.mean().item(), abs=1e-6)
    assert r.stderr == pytest.approx(v.std().item() / math.sqrt(200), rel=1e-6)
    share = math.sqrt((b.variance.double() * scale**2).sum().item()) / 200
    assert r.estimator_stderr == pytest.approx(share, rel=1e-6) and 0 < share < r.stderr
    again = likelihood(model, data, samples=3, seed=5, progress=False)
    other = likelihood(model, data, samples=3, seed=6, progress=False)
    torch.testing.assert_close(again.per_example, r.per_example)
    assert not torch.equal(other.per_example, r.per_example)
    # the two seeds agree within their errors
    assert abs(other.value - r.value) < 4 * math.hypot(r.stderr, other.stderr)


def test_kl_to_truth_is_zero_for_the_truth_and_the_gaussian_kl_otherwise():
    data = continuous_data()
    model = registry.build("gaussian", {}, None, (2,))
    model.fit(data.train, progress=False)
    with torch.no_grad():  # the truth itself
        model.mean.copy_(torch.tensor([1.0, -1.0]))
        model.scale_tril.copy_(torch.eye(2))
    r = likelihood(model, data, progress=False)
    assert r.unit == "nats" and r.kl_to_truth[0] == pytest.approx(0.0, abs=1e-5)
    assert "nats" in r.to_dict() and r.to_dict()["kl_to_truth"]["value"] == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():  # shifted by (0.1, 0) and scaled by 1.05: KL in closed form
        model.mean.copy_(torch.tensor([1.1, -1.0]))
        model.scale_tril.copy_(1.05 * torch.eye(2))
    r = likelihood(model, data, progress=False)
    q = torch.distributions.MultivariateNormal(torch.tensor([1.1, -1.0], dtype=torch.float64),
                                               1.05**2 * torch.eye(2, dtype=torch.float64))
    kl = torch.distributions.kl_divergence(data.truth.dist, q).item()
    value, stderr = r.kl_to_truth
    assert abs(value - kl) < 4 * stderr and stderr < 0.003
    # paired: far smaller than the stderr of NLL minus entropy
    assert stderr < r.stderr / 3
    assert "KL to truth" in r.table()


class Implicit(GenerativeModel):
    family = "gan-like"
    has_likelihood = False


def test_refusals_are_one_sentence():
    data = discrete_data()
    with pytest.raises(UserError, match="implicit: no likelihood"):
        likelihood(Implicit(levels=6, shape=(1, 2, 2)), data, progress=False)
    model = registry.build("uniform", {}, 7, (1, 2, 2))
    model.fit(data.train, progress=False)
    with pytest.raises(UserError, match="built for levels 7"):
        likelihood(model, data, progress=False)
    model = registry.build("uniform", {}, 6, (1, 2, 2))
    with pytest.raises(UserError, match="no estimator"):
        likelihood(model, data, estimator="iwae", progress=False)
    with pytest.raises(UserError, match="split"):
        likelihood(model, data, split="valid", progress=False)
    with pytest.raises(UserError, match="samples"):
        likelihood(model, data, samples=0, progress=False)


def test_gaussian_mixture_on_eight_gaussians_is_near_the_truth():
    # the true model class (benchmarks.md toy2d-kl: scikit-learn's mixture reaches ~0.001 nats)
    data = load("toy2d:8gaussians", n_train=4000, n_test=2000)
    model = registry.build("gaussian-mixture", {"components": 8, "restarts": 2}, None, (2,))
    model.fit(data.train, progress=False)
    r = likelihood(model, data, progress=False)
    value, stderr = r.kl_to_truth
    assert -3 * stderr < value < 0.02 and stderr < 0.005
    # KL = NLL - H(p): the paired estimate agrees with the unpaired one within their errors
    h = data.truth.entropy()
    assert abs((r.value - h.value.item()) - value) < 4 * math.hypot(r.stderr, h.stderr.item())


class _WithExtras(GenerativeModel):
    """A fixed per-example bound with extras: elbo = nll + |x sum|, gap = elbo - nll (a VAE's layout)."""

    family = "with-extras"
    estimators = ("iwae",)

    def bound(self, x, *, estimator=None, samples=None, generator=None):
        from lowerbound.prob.bound import Bound

        nll = 3.0 + x.double().flatten(1).sum(1) * 0.1
        elbo = nll + x.double().flatten(1).sum(1).abs() * 0.01
        return Bound({"nll": nll}, "iwae-k=1", False, self.dims, extras={"elbo": elbo, "gap": elbo - nll})


def test_extras_are_reported_as_mean_and_stderr_over_examples_in_the_unit():
    data = discrete_data()
    model = _WithExtras(levels=data.levels, shape=data.shape)
    r = likelihood(model, data, progress=False, batch_size=64)
    b = model.bound(data.test)
    scale = 1 / (4 * math.log(2))
    for name in ("elbo", "gap"):
        v = b.extras[name] * scale
        assert r.extras[name][0] == pytest.approx(v.mean().item(), rel=1e-9)
        assert r.extras[name][1] == pytest.approx(v.std().item() / math.sqrt(200), rel=1e-9)
    assert r.extras["gap"][0] == pytest.approx(r.extras["elbo"][0] - r.value, rel=1e-9)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["extras"]["gap"] == {"value": r.extras["gap"][0], "stderr": r.extras["gap"][1]}
    assert "gap (extra)" in r.table() and "elbo (extra)" in r.table()
    assert likelihood(registry.build("uniform", {}, 6, (1, 2, 2)), data, progress=False).extras == {}


def test_a_part_of_a_split_is_scored_with_the_data_sets_truth():
    data = continuous_data()
    model = registry.build("gaussian", {}, None, (2,))
    model.fit(data.train, progress=False)
    part = data.train[:300]
    r = likelihood(model, data, "valid", x=part, progress=False)
    reference = likelihood(model, Dataset("toy-gauss", data.train, part, None, (2,), truth=data.truth),
                           progress=False)
    assert r.split == "valid" and r.n == 300 and r.dataset == "toy-gauss"
    assert r.value == pytest.approx(reference.value) and r.kl_to_truth == pytest.approx(reference.kl_to_truth)
    with pytest.raises(UserError, match="shape"):
        likelihood(model, data, "valid", x=torch.zeros(5, 3), progress=False)


class _SumBound(GenerativeModel):
    """-log P(x) <= 3 + 0.1 sum(x): a fixed per-example bound whose mean over data is known."""

    family = "sum-bound"
    estimators = ("exact",)

    def bound(self, x, *, estimator=None, samples=None, generator=None):
        from lowerbound.prob.bound import Bound

        return Bound({"nll": 3.0 + 0.1 * x.double().flatten(1).sum(1)}, "exact", True, self.dims)


def test_interval_over_examples_covers_the_population_mean():
    """Test sets of 60 examples, levels uniform on 0..5 in 4 dimensions: E[bound] = 3 + 0.1 * 4 * 2.5 nats.
    Over 300 test sets the reported 95% interval holds it within binomial error."""
    model = _SumBound(levels=6, shape=(4,))
    g = torch.Generator().manual_seed(3)
    results = []
    for _ in range(300):
        x = torch.randint(0, 6, (60, 4), generator=g)
        results.append(likelihood(model, Dataset("uniform-levels", x, x, 6, (4,)), progress=False))
    exact = 4.0 / (4 * math.log(2))
    values, stderrs = torch.tensor([r.value for r in results]), torch.tensor([r.stderr for r in results])
    assert all(r.interval[0] == pytest.approx(r.value - Z95 * r.stderr) for r in results)
    assert_coverage(values, stderrs, exact)
