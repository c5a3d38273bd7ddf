"""Small convolutional encoder and decoder for images, tensor -> tensor (no probability here).

ConvEncoder: [B, C, H, W] -> [B, d_out], strided 3x3 convolutions halving the size each stage, then
an MLP head.  ConvDecoder: [B, d_in] -> [B, C_out, H, W], the mirror image: an MLP to a small map,
then nearest-neighbour upsampling + 3x3 convolution per stage (Odena et al. 2016, "Deconvolution and
checkerboard artifacts"), ending exactly at (H, W) whatever the size (odd sizes included).
"""

from __future__ import annotations

import math

from torch import Tensor, nn


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 stage (padding 1, kernel 3): ceil(s / 2), first = input."""
    sizes = [(height, width)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def _act(dropout: float) -> list[nn.Module]:
    return [nn.SiLU()] + ([nn.Dropout(dropout)] if dropout else [])


class ConvEncoder(nn.Module):
    """[B, in_channels, H, W] -> [B, d_out]."""

    def __init__(self, in_channels: int, size: tuple[int, int], d_out: int,
                 channels: tuple[int, ...] = (32, 64), hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        if not channels:
            raise ValueError("ConvEncoder needs at least one stage of channels")
        layers: list[nn.Module] = []
        c = in_channels
        for c_next in channels:
            layers += [nn.Conv2d(c, c_next, 3, stride=2, padding=1), *_act(dropout)]
            c = c_next
        h, w = stage_sizes(*size, len(channels))[-1]
        layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), *_act(dropout), nn.Linear(hidden, d_out)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """[B, d_in] -> [B, out_channels, H, W]; `channels` lists the encoder's stages (mirrored here)."""

    def __init__(self, d_in: int, out_channels: int, size: tuple[int, int],
                 channels: tuple[int, ...] = (32, 64), hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        if not channels:
            raise ValueError("ConvDecoder needs at least one stage of channels")
        sizes = stage_sizes(*size, len(channels))
        c = channels[-1]
        h, w = sizes[-1]
        self.start = (c, h, w)
        self.head = nn.Sequential(nn.Linear(d_in, hidden), *_act(dropout),
                                  nn.Linear(hidden, c * h * w), nn.SiLU())
        layers: list[nn.Module] = []
        # stage i upsamples to sizes[i] with channels[i - 1] (the input size gets the first stage's width)
        for i in range(len(channels), 0, -1):
            c_next = channels[i - 2] if i >= 2 else channels[0]
            layers += [nn.Upsample(size=sizes[i - 1], mode="nearest"),
                       nn.Conv2d(c, c_next, 3, padding=1), *_act(dropout)]
            c = c_next
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.head(z).view(z.shape[0], *self.start))
