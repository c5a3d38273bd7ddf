"""The UNet (nets/unet.py): shapes at digits and CIFAR sizes, identity at initialization, per-example
independence (GroupNorm and attention never mix examples), time conditioning, clear refusals."""

from __future__ import annotations

import pytest
import torch

from lowerbound.nets.unet import UNet


def _randomize(net: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_digits_size_maps_to_twice_the_channels_and_starts_at_zero():
    torch.manual_seed(0)
    net = UNet(1, 2, image_size=8)
    out = net(torch.randn(3, 1, 8, 8), torch.rand(3))
    assert out.shape == (3, 2, 8, 8)
    # the output convolution is zero-initialized: every block starts as the identity, the net at 0
    assert torch.equal(out, torch.zeros_like(out))


def test_cifar_config_by_options_alone():
    torch.manual_seed(0)
    net = UNet(3, 6, image_size=32, channels=16, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
               attention_resolutions=(16,), heads=2)
    assert net(torch.randn(2, 3, 32, 32), torch.rand(2)).shape == (2, 6, 32, 32)


def test_examples_do_not_mix_and_time_matters():
    torch.manual_seed(0)
    net = UNet(1, 1, image_size=8, channels=8, attention_resolutions=(8, 4)).eval()
    _randomize(net)
    x, t = torch.randn(5, 1, 8, 8), torch.rand(5)
    with torch.no_grad():
        batched = net(x, t)
        single = torch.cat([net(x[i:i + 1], t[i:i + 1]) for i in range(5)])
        other_t = net(x, 1 - t)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)
    assert (batched - other_t).abs().max() > 1e-3


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet(1, 2, image_size=8, channels=8, dropout=0.0)
    _randomize(net)
    net(torch.randn(2, 1, 8, 8), torch.rand(2)).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_sizes_are_refused_by_name():
    with pytest.raises(ValueError, match="divisible"):
        UNet(1, 1, image_size=6, channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="dropout"):
        UNet(1, 1, image_size=8, dropout=1.5)
    net = UNet(1, 1, image_size=8, channels=8)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 3, 8, 8), torch.rand(2))
