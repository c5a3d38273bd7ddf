"""The causal trunks of the autoregressive family (nets/pixelcnn.py, nets/transformer.py), checked
against the oracle of autograd: the Jacobian of the output at raster position t with respect to the
input features is exactly zero at positions >= t (causality), and, where the receptive field
covers the image, non-zero at every position < t (no blind spot: the gated PixelCNN's point)."""

import pytest
import torch

from lowerbound.nets.pixelcnn import PixelCNN
from lowerbound.nets.transformer import CausalTransformer


def dependence(net, height: int, width: int, features: int = 4) -> torch.Tensor:
    """[N, N] with entry (t, s) = |d out[t] / d in[s]| summed over features and batch."""
    torch.manual_seed(1)
    e = torch.randn(2, features, height, width, dtype=torch.float64, requires_grad=True)
    out = net(e).flatten(2)  # [B, F, N]
    weights = torch.randn(out.shape[:2], dtype=out.dtype)  # not a plain sum: a LayerNorm's is constant
    rows = []
    for t in range(height * width):
        (grad,) = torch.autograd.grad((weights * out[:, :, t]).sum(), e, retain_graph=True)
        rows.append(grad.abs().sum((0, 1)).flatten())
    return torch.stack(rows)


def make(arch: str, layers: int, height: int, width: int, features: int = 4):
    torch.manual_seed(0)
    if arch == "pixelcnn":
        net = PixelCNN(features, layers, kernel=3)
    else:
        net = CausalTransformer(features, layers, heads=2, positions=height * width)
    return net.double().eval()


@pytest.mark.parametrize("arch", ["pixelcnn", "transformer"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_output_at_t_never_sees_positions_at_or_after_t(arch, layers):
    dep = dependence(make(arch, layers, 4, 4), 4, 4)
    upper = torch.triu(torch.ones_like(dep, dtype=torch.bool))  # s >= t, the diagonal included
    assert dep[upper].max() == 0
    # and each position after the first sees the pixel to its left, or the one above at a row start
    assert all(dep[t, t - 1 if t % 4 else t - 4] > 0 for t in range(1, 16))


@pytest.mark.parametrize("arch,layers", [("pixelcnn", 4), ("transformer", 1)])
def test_every_earlier_position_is_seen_no_blind_spot(arch, layers):
    """5x5 image: after 4 gated layers with kernel 3 the vertical stack spans every column of the
    rows above, so pixel (4, 2) sees (3, 4), the upper-right pixel a single masked stack misses."""
    dep = dependence(make(arch, layers, 5, 5), 5, 5)
    lower = torch.tril(torch.ones_like(dep, dtype=torch.bool), diagonal=-1)
    assert dep[lower].min() > 0


def test_kv_cached_steps_equal_the_full_pass():
    net = make("transformer", 2, 3, 3, features=8)
    e = torch.randn(3, 8, 3, 3, dtype=torch.float64)
    full = net(e).flatten(2)
    cache: dict = {}
    steps = torch.stack([net.step(e, t, cache) for t in range(9)], -1)
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-12)
    assert cache[0][0].shape[2] == 9  # the cache holds every position's keys


def test_pixelcnn_row_steps_equal_the_full_pass():
    net = make("pixelcnn", 3, 3, 4, features=8)
    e = torch.randn(3, 8, 3, 4, dtype=torch.float64)
    full = net(e).flatten(2)
    cache: dict = {}
    steps = torch.stack([net.step(e, t, cache) for t in range(12)], -1)
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-12)
