"""The flow family against its oracles: invertibility and autograd's Jacobian for every arch, the
closed form of an identity flow with a standard-normal base, and on tiny discrete spaces the exact
probability of each bin by numerical integration of the flow's density (Gauss-Legendre quadrature):
the dequantization bounds sit above -log P(x), the iw bound approaches it, probabilities sum to <= 1,
and a density above 1 still gives bounds >= 0."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from lowerbound.errors import UserError
from lowerbound.models import registry
from lowerbound.models.flows.base import ActNorm

ARCHS = ["nsf", "realnvp", "maf", "glow"]


def random_flow(arch, levels, shape, seed=0, **options):
    """A flow in float64 whose every parameter is random (zero-initialised layers included)."""
    torch.manual_seed(seed)
    if arch == "glow":
        options = {"steps": 2, "width": 8, **options}
    else:
        options = {"transforms": 3, "hidden": [16, 16], "dequant_hidden": [16], **options}
    model = registry.build("flow", {"arch": arch, **options}, levels, shape).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if isinstance(_owner(model, name), ActNorm):
                p.add_(0.2 * torch.randn_like(p))
            elif arch == "glow":  # its couplings start as the identity (zero last layers)
                p.add_(0.05 * torch.randn_like(p))
            elif name.startswith("dequantizer."):  # it starts uniform; make q(u|x) non-trivial
                p.add_(0.03 * torch.randn_like(p))
    return model


def _owner(model, name):
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


def shape_for(arch):
    return (1, 4, 4) if arch == "glow" else (3,)


@pytest.mark.parametrize("arch", ARCHS)
def test_inverse_of_forward_is_the_identity_including_the_spline_tails(arch):
    shape = shape_for(arch)
    model = random_flow(arch, None, shape)
    x = torch.randn(64, *shape, dtype=torch.float64) * 3
    x.view(64, -1)[:8] = torch.linspace(-9, 9, 8, dtype=torch.float64)[:, None]  # beyond nsf's [-5, 5]
    flat = model._layout(x)
    z, _ = model.transform(flat)
    assert (model.transform.inverse(z) - flat).abs().max() < 1e-5
    z2 = torch.randn_like(z) * 2
    assert (model.transform(model.transform.inverse(z2))[0] - z2).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_log_det_is_that_of_the_autograd_jacobian(arch):
    shape = shape_for(arch)
    model = random_flow(arch, None, shape, seed=1)
    for x in torch.randn(3, *shape, dtype=torch.float64) * 2:
        def f(v):
            return model.transform(model._layout(v.view(1, *shape)))[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
        _, ladj = model.transform(model._layout(x.view(1, *shape)))
        assert abs(float(ladj.detach()) - float(torch.linalg.slogdet(jac).logabsdet)) < 1e-6


def test_identity_flow_with_a_standard_normal_base_is_the_closed_form():
    model = registry.build("flow", {"transforms": 0}, None, (3,)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    b = model.bound(x)
    assert b.exact and b.estimator == "exact"
    torch.testing.assert_close(b.nats, -Normal(0.0, 1.0).log_prob(x).sum(1).detach())


def test_identity_flow_dequantization_and_iw_bounds_in_closed_form():
    """Uniform dequantization of N(0, I) on K = 5 levels: E_u[-log N(y + u)] - D log w in closed form,
    and -log P(x) = -sum_d log(Phi(y_d + w/2) - Phi(y_d - w/2)) exactly."""
    levels, d = 5, 3
    model = registry.build("flow", {"transforms": 0}, levels, (d,)).double()
    w = 2 / (levels - 1)
    x = torch.tensor([[0, 2, 4], [1, 1, 3], [2, 2, 2]])
    y = x.double() * w - 1
    g = torch.Generator().manual_seed(0)
    b = model.bound(x, samples=4000, generator=g)
    expected = 0.5 * (y.pow(2) + w**2 / 12).sum(1) + d / 2 * math.log(2 * math.pi) - d * math.log(w)
    assert ((b.nats - expected).abs() < 5 * b.variance.sqrt() + 1e-9).all()
    assert (b.terms["dequantization"] == 0).all()
    n = Normal(0.0, 1.0)
    exact = -(n.cdf(y + w / 2) - n.cdf(y - w / 2)).log().sum(1)
    iw = model.bound(x, estimator="iw", samples=4000, generator=g)
    assert iw.estimator == "iw-k=4000"
    assert ((iw.nats - exact).abs() < 5 * iw.variance.sqrt() + 1e-4).all()
    assert (expected >= exact).all() and (expected - exact).max() > 0.01  # the Jensen gap iw closes


def bin_log_probs(model, levels, nodes=16):
    """log P(x) for every x of {0..K-1}^2 by Gauss-Legendre quadrature of the flow's density over its
    bin (2-D): [K^2] nats, with the points [K^2, 2] in itertools.product order."""
    w = 2 / (levels - 1)
    t, wt = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(nodes))
    points = torch.tensor(list(itertools.product(range(levels), repeat=2)))
    y = points.double() * w - 1
    offs = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2) * (w / 2)
    weights = (wt[:, None] * wt[None, :]).reshape(-1) * (w / 2) ** 2
    v = (y[:, None, :] + offs[None]).reshape(-1, 2)
    with torch.no_grad():
        dens = model.log_density(v).view(len(points), -1).exp()
    return (dens * weights).sum(1).log(), points


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_bounds_against_the_exact_bin_probabilities_by_quadrature(dequantization):
    levels = 5
    model = random_flow("nsf", levels, (2,), seed=2, dequantization=dequantization)
    log_p, points = bin_log_probs(model, levels)
    assert log_p.exp().sum() <= 1.0
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        iw = model.bound(points, estimator="iw", samples=1000, generator=g)
        plain = model.bound(points, samples=500, generator=g)
    err = (iw.nats + log_p).abs()
    assert (err < 0.02 + 5 * iw.variance.sqrt()).all(), err.max()
    assert (plain.nats + log_p > -5 * plain.variance.sqrt()).all()  # an upper bound on -log P(x)
    assert float((plain.nats + log_p).mean()) > 0.01  # and a visibly looser one


def test_variational_terms_identities_with_a_far_from_uniform_q():
    """E_q log q(u|x) = KL(q || uniform) >= 0; the iw bound with K = 1 is the plain bound on the same
    draw (so log q enters both); and the plain bound stays above the exact -log P(x)."""
    levels = 5
    model = random_flow("nsf", levels, (2,), seed=9, dequantization="variational")
    with torch.no_grad():
        for p in model.dequantizer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    log_p, points = bin_log_probs(model, levels)
    with torch.no_grad():
        plain = model.bound(points, samples=400, generator=torch.Generator().manual_seed(1))
        one = model.bound(points, samples=1, generator=torch.Generator().manual_seed(2))
        iw1 = model.bound(points, estimator="iw", samples=1, generator=torch.Generator().manual_seed(2))
    assert (plain.terms["dequantization"] > 0).all()
    assert (plain.nats + log_p > -5 * plain.variance.sqrt()).all()
    torch.testing.assert_close(iw1.nats, one.nats)
    assert one.terms["dequantization"].abs().min() > 1e-3


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_probabilities_of_every_point_of_a_tiny_space_sum_to_at_most_one(dequantization):
    """K = 3, D = 4: the 81 points; exp(-bound) <= P(x) by Jensen, and sum_x P(x) <= 1."""
    levels, d = 3, 4
    model = random_flow("realnvp", levels, (d,), seed=4, dequantization=dequantization)
    points = torch.tensor(list(itertools.product(range(levels), repeat=d)))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for estimator in ("dequantization", "iw"):
            b = model.bound(points, estimator=estimator, samples=200, generator=g)
            assert float(torch.exp(-b.nats).sum()) <= 1.0


def test_a_density_above_one_is_not_an_error_and_discrete_bounds_stay_nonnegative():
    d, levels = 4, 5
    cont = registry.build("flow", {"transforms": 0}, None, (d,)).double()
    disc = registry.build("flow", {"transforms": 0}, levels, (d,)).double()
    for m in (cont, disc):
        with torch.no_grad():
            m.transform.parts[0].log_scale.fill_(1.0)  # z = e x: a density e^D N(e x) peaked at 0
    log_density = float(cont.log_density(torch.zeros(1, d, dtype=torch.float64)).detach())
    assert log_density > 0 and -float(cont.bound(torch.zeros(1, d, dtype=torch.float64)).nats.detach()) > 0
    points = torch.tensor(list(itertools.product(range(levels), repeat=d)))
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for estimator in ("dequantization", "iw"):
            assert (disc.bound(points, estimator=estimator, samples=64, generator=g).nats >= 0).all()


def test_variational_dequantizer_starts_uniform_and_its_density_matches_autograd():
    from lowerbound.models.flows.dequantizer import VariationalDequantizer, log_logistic

    torch.manual_seed(7)
    q = VariationalDequantizer(3, transforms=2, hidden=(16,), context=4).double()
    y = torch.rand(2, 3, dtype=torch.float64) * 2 - 1
    _, log_q = q.sample(y, 5, generator=torch.Generator().manual_seed(0))
    assert log_q.abs().max() < 1e-9  # identity flow + logistic base + sigmoid = uniform on the cube
    with torch.no_grad():
        for p in q.parameters():
            p.add_(0.3 * torch.randn_like(p))
    u, log_q = q.sample(y[:1], 1, generator=torch.Generator().manual_seed(8))
    unif = torch.rand((1, 3), generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    eps = unif.log() - (-unif).log1p()
    context = q.embed(y[:1])

    def u_of(e):
        return torch.sigmoid(q.flow.inverse(e.view(1, 3), context)).reshape(-1)

    jac = torch.autograd.functional.jacobian(u_of, eps.reshape(-1))
    want = log_logistic(eps) - torch.linalg.slogdet(jac).logabsdet
    assert abs(float(log_q.detach()) - float(want)) < 1e-6
    assert ((u > 0) & (u < 1)).all() and torch.allclose(u.view(-1), u_of(eps).detach())


@pytest.mark.parametrize("arch", ARCHS)
def test_samples_have_the_data_layout(arch):
    shape = (1, 4, 4) if arch == "glow" else (6,)
    model = random_flow(arch, 17, shape)
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, *shape) and s.dtype == torch.long and s.min() >= 0 and s.max() <= 16


def test_bad_options_are_one_sentence():
    with pytest.raises(UserError, match="glow arch needs images"):
        registry.build("flow", {"arch": "glow"}, None, (2,))
    with pytest.raises(UserError, match="passes"):
        registry.build("flow", {"passes": 1}, None, (2,))
    model = registry.build("flow", {}, None, (2,))
    with pytest.raises(UserError, match="no estimator 'iw'"):
        model.bound(torch.zeros(1, 2), estimator="iw")
