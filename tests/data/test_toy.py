"""toy2d truths against oracles: 2-D quadrature (normalisation, entropy, moments), Monte Carlo
entropy within its standard error, the Rice closed form against an angular integral."""

import math

import pytest
import torch

from lowerbound.data import load
from lowerbound.data.toy import Moons, Rings, toy_truth
from lowerbound.errors import UserError

NAMES = ["8gaussians", "checkerboard", "rings", "moons"]
# grid of cell midpoints: exact for the checkerboard's squares, spectrally accurate for smooth ones
H = 0.05  # cell edges of the checkerboard fall on grid lines
LIM = 5.0


def _grid():
    c = torch.arange(-LIM + H / 2, LIM, H, dtype=torch.float64)
    x, y = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], 1)


@pytest.fixture(scope="module")
def quadrature():
    """name -> (total mass, entropy, E[x], E[|x|^2]) by midpoint quadrature on [-5, 5]^2."""
    pts = _grid()
    out = {}
    for name in NAMES:
        lp = toy_truth(name).log_prob(pts)
        p = lp.exp()
        w = p * H * H
        plogp = torch.where(p > 0, p * lp, torch.zeros_like(p))
        out[name] = (w.sum().item(), -(plogp * H * H).sum().item(), (w[:, None] * pts).sum(0),
                     (w * (pts**2).sum(1)).sum().item())
    return out


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name, quadrature):
    assert quadrature[name][0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_entropy_mc_matches_quadrature(name, quadrature):
    est = toy_truth(name).entropy_mc(2**13, torch.Generator().manual_seed(123))
    assert abs(est.item() - quadrature[name][1]) < 4 * est.stderr.item() + 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_sampler_moments_match_density(name, quadrature):
    """The sampler draws from the density log_prob describes: first and second moments agree."""
    x = toy_truth(name).sample(2**13, torch.Generator().manual_seed(7))
    _, _, mean, second = quadrature[name]
    se = x.std(0) / math.sqrt(len(x))
    assert ((x.mean(0) - mean).abs() < 4 * se + 1e-4).all()
    r2 = (x**2).sum(1)
    assert abs(r2.mean().item() - second) < 4 * r2.std().item() / math.sqrt(len(x)) + 1e-4


def test_eight_gaussians_entropy_is_the_published_value(quadrature):
    assert abs(quadrature["8gaussians"][1] - 2.833) < 0.003  # benchmarks.md: 2.833 +- 0.002


def test_entropy_is_cached_monte_carlo_with_its_stderr(quadrature):
    truth = Rings()  # a fresh instance, so the cache starts empty
    truth.mc_samples = 2**14
    h = truth.entropy()
    assert not h.exact and h.num_samples == 2**14 and truth.entropy() is h
    assert abs(h.item() - quadrature["rings"][1]) < 4 * h.stderr.item() + 1e-4


def test_checkerboard_entropy_exact_and_matches_mc():
    truth = toy_truth("checkerboard")
    h = truth.entropy()
    assert h.exact and h.item() == pytest.approx(math.log(32.0))
    x = truth.sample(4096, torch.Generator().manual_seed(3))
    assert torch.allclose(-truth.log_prob(x), torch.full((4096,), math.log(32.0), dtype=torch.float64))
    outside = torch.tensor([[3.0, 1.0], [-1.0, 1.0], [5.0, 0.0], [1.0, -1.0]])
    assert torch.isinf(truth.log_prob(outside)).all()


def test_checkerboard_float32_points_stay_on_support():
    ds = load("toy2d:checkerboard", n_train=4000, n_test=10)
    assert ds.train.dtype == torch.float32
    assert torch.isfinite(ds.truth.log_prob(ds.train)).all()


def test_rings_closed_form_matches_angular_integral():
    rings = Rings()
    x = torch.tensor([[0.0, 0.0], [0.7, 0.2], [1.5, 0.0], [-2.0, 1.2], [3.3, 0.1]], dtype=torch.float64)
    theta = torch.arange(4096, dtype=torch.float64) * (2 * math.pi / 4096)  # periodic: trapezoid exact
    unit = torch.stack([theta.cos(), theta.sin()], 1)
    s2 = rings.std**2
    dens = torch.zeros(len(x), dtype=torch.float64)
    for radius in rings.radii:
        d2 = ((x[:, None] - radius * unit) ** 2).sum(-1)
        dens += (torch.exp(-d2 / (2 * s2)) / (2 * math.pi * s2)).mean(1) / len(rings.radii)
    assert torch.allclose(rings.log_prob(x).exp(), dens, rtol=1e-9, atol=1e-300)


def test_moons_gauss_legendre_matches_midpoint_rule():
    """The 256-node Gauss-Legendre density against a 10000-point midpoint rule over t."""
    moons = Moons()
    x = torch.cat([moons.sample(150, torch.Generator().manual_seed(0)),
                   torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)])
    n = 10000
    t = (torch.arange(n, dtype=torch.float64) + 0.5) * (math.pi / n)
    s2 = moons.std**2
    dens = torch.zeros(len(x), dtype=torch.float64)
    for m in (0, 1):
        d2 = ((x[:, None] - Moons._centre(m, t)) ** 2).sum(-1)
        dens += 0.5 * (torch.exp(-d2 / (2 * s2)) / (2 * math.pi * s2)).mean(1)
    assert torch.allclose(moons.log_prob(x), dens.log(), atol=1e-6)


def test_load_sizes_seeds_and_splits():
    a = load("toy2d:8gaussians", n_train=300, n_test=100)
    b = load("toy2d:8gaussians", n_train=300, n_test=100)
    c = load("toy2d:8gaussians", n_train=300, n_test=100, seed=1)
    assert a.train.shape == (300, 2) and a.test.shape == (100, 2) and a.levels is None
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train[:100], a.test) and not torch.equal(a.train, c.train)
    assert a.truth is toy_truth("8gaussians") and a.dims == 2


def test_bad_names_and_options_are_one_sentence():
    with pytest.raises(UserError, match="Unknown toy2d set 'spiral'"):
        load("toy2d:spiral")
    with pytest.raises(UserError, match="Name a toy2d set"):
        load("toy2d")
    with pytest.raises(UserError, match="toy2d.n_tran"):
        load("toy2d:moons", n_tran=5)
    with pytest.raises(UserError, match="positive"):
        load("toy2d:moons", n_train=0)
    with pytest.raises(UserError, match=r"shape \[B, 2\]"):
        toy_truth("moons").log_prob(torch.zeros(3, 3))
