"""The monotone schedule network (Kingma et al. 2021, App. H): monotone for any parameters, exact
derivative, pinned endpoints; and the TimeMLP's contract."""

import pytest
import torch

from lowerbound.nets.monotone import MonotoneNet, MonotoneSchedule
from lowerbound.nets.time_mlp import TimeMLP


def _randomize(module: torch.nn.Module, seed: int, std: float = 3.0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


@pytest.mark.parametrize("seed", range(5))
def test_monotone_net_is_increasing_under_random_parameters(seed):
    net = MonotoneNet(hidden=64).double()
    _randomize(net, seed)
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    f, df = net(t)
    assert (f[1:] > f[:-1]).all()
    assert (df > 0).all()


def test_monotone_derivative_matches_autograd():
    net = MonotoneNet(hidden=32).double()
    _randomize(net, 7, std=1.5)
    t = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t.requires_grad_(True)
    f, df = net(t)
    (auto,) = torch.autograd.grad(f.sum(), t)
    torch.testing.assert_close(df, auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["learned", "linear"])
@pytest.mark.parametrize("learn_endpoints", [False, True])
def test_schedule_endpoints_are_pinned(kind, learn_endpoints):
    sched = MonotoneSchedule(-13.3, 5.0, kind=kind, learn_endpoints=learn_endpoints,
                             hidden=16).double()
    if sched.net is not None:
        _randomize(sched.net, 3)
    g, dg = sched(torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64))
    g0, g1 = sched.endpoints()
    assert g[0].item() == g0.item() and g[2].item() == pytest.approx(g1.item(), abs=1e-12)
    # the ends are the configured values up to the float32 rounding of the constants
    assert g0.item() == pytest.approx(-13.3, abs=1e-5) and g1.item() == pytest.approx(5.0, abs=1e-5)
    assert -13.3 < g[1].item() < 5.0 and (dg > 0).all()
    if kind == "linear":
        assert g[1].item() == pytest.approx(g0.item() + 0.25 * (g1 - g0).item(), abs=1e-12)


def test_schedule_derivative_matches_finite_differences():
    sched = MonotoneSchedule(-10.0, 8.0, hidden=16).double()
    _randomize(sched.net, 11, std=2.0)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    numeric = (sched(t + h)[0] - sched(t - h)[0]) / (2 * h)
    torch.testing.assert_close(sched(t)[1], numeric, rtol=1e-6, atol=1e-6)


def test_schedule_rejects_unordered_endpoints():
    with pytest.raises(ValueError, match="gamma_0 < gamma_1"):
        MonotoneSchedule(2.0, 1.0)


def test_time_mlp_shapes_time_dependence_and_bad_input():
    torch.manual_seed(0)
    net = TimeMLP(6, 2, width=32, depth=2, emb_dim=8)
    x = torch.randn(5, 6)
    out0, out1 = net(x, torch.zeros(5)), net(x, torch.full((5,), 0.5))
    assert out0.shape == (5, 2)
    assert not torch.allclose(out0, out1)  # the time reaches the output
    out0.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        net(torch.randn(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="t of shape"):
        net(x, torch.zeros(4))
