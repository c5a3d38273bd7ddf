"""Gated PixelCNN without a blind spot (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"), residual and with dropout: a causal trunk over the raster order of an image.

    e [B, F, H, W] (features of every pixel)  ->  h [B, F, H, W],  h[:, :, i, j] a function of the
    features of the pixels before (i, j) in raster order only: rows < i, and row i left of j.

Two stacks, as in the paper.  The vertical stack sees whole rows above (every column: no blind
spot); the horizontal stack sees the current row to the left and takes the vertical stack's
features through a 1x1 link.  Each layer is the gated unit tanh(W_f * x) . sigmoid(W_g * x), here
with a residual connection on both stacks and dropout before the residual's 1x1 convolution.

The paper's masks are realized the way PixelCNN++ (Salimans et al. 2017) implements them: the
inputs of the stacks are shifted by one pixel (down for the vertical stack, right for the
horizontal one) and every convolution is one-sided (the vertical kernel is (k//2 + 1) x k, padded
on top only; the horizontal one is 1 x (k//2 + 1), padded on the left only).  That is a masked
convolution without the multiplications by zero.  The "mask" of this module is therefore the
pair of shifts and the one-sided paddings below; a test perturbs inputs to check them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def shift_down(x: Tensor) -> Tensor:
    """[B, F, H, W] -> the same, moved one row down (row 0 is zeros): row i holds row i - 1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def shift_right(x: Tensor) -> Tensor:
    """[B, F, H, W] -> the same, moved one column right: column j holds column j - 1."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(x: Tensor) -> Tensor:
    """The gated activation unit: [B, 2F, ...] -> tanh(first half) * sigmoid(second half)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One gated layer of both stacks, residual: (v, h) -> (v', h')."""

    def __init__(self, width: int, kernel: int, dropout: float):
        super().__init__()
        half = kernel // 2
        # vertical: rows i - half .. i, columns j - half .. j + half (one-sided in rows)
        self.v_conv = nn.Conv2d(width, 2 * width, (half + 1, kernel))
        self.v_pad = (half, half, half, 0)  # left, right, top, bottom
        # horizontal: row i, columns j - half .. j (one-sided in columns)
        self.h_conv = nn.Conv2d(width, 2 * width, (1, half + 1))
        self.h_pad = (half, 0, 0, 0)
        self.v_to_h = nn.Conv2d(2 * width, 2 * width, 1)
        self.v_out = nn.Conv2d(width, width, 1)
        self.h_out = nn.Conv2d(width, width, 1)
        self.drop = nn.Dropout(dropout)

    def vertical(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """v -> (v', the link into the horizontal stack)."""
        v_pre = self.v_conv(F.pad(v, self.v_pad))
        return v + self.v_out(self.drop(gate(v_pre))), self.v_to_h(v_pre)

    def horizontal(self, h: Tensor, link: Tensor) -> Tensor:
        h_pre = self.h_conv(F.pad(h, self.h_pad)) + link
        return h + self.h_out(self.drop(gate(h_pre)))

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v, link = self.vertical(v)
        return v, self.horizontal(h, link)


class PixelCNN(nn.Module):
    """e [B, width, H, W] -> h [B, width, H, W], causal in raster order (strictly: pixel (i, j)'s
    output never sees pixel (i, j) itself).

    layers gated blocks with kernel size `kernel` (odd); after L layers the vertical stack reaches
    L * (kernel // 2) columns to each side and L * (kernel // 2) + 1 rows up."""

    def __init__(self, width: int, layers: int, kernel: int = 3, dropout: float = 0.0):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and at least 3, got {kernel}")
        if layers < 1 or width < 1:
            raise ValueError(f"layers and width must be positive, got {layers}, {width}")
        self.blocks = nn.ModuleList(GatedBlock(width, kernel, dropout) for _ in range(layers))
        self.out = nn.Sequential(nn.GELU(), nn.Conv2d(width, width, 1))

    def forward(self, e: Tensor) -> Tensor:
        # the shifts make both stacks blind to the current pixel; every later layer is one-sided
        v, h = shift_down(e), shift_right(e)
        for block in self.blocks:
            v, h = block(v, h)
        return self.out(h)

    def step(self, e: Tensor, t: int, cache: dict) -> Tensor:
        """The output at raster position t = (i, j): [B, width].  Steps come in raster order with one
        `cache` dict: at the start of row i the vertical stack runs once on rows 0..i (its row i
        depends on rows < i only) and its links into row i are cached; each pixel then runs only the
        horizontal stack, on row i alone."""
        i, j = divmod(t, e.shape[-1])
        if cache.get("row") != i:
            v, links = shift_down(e[:, :, :i + 1]), []
            for block in self.blocks:
                v, link = block.vertical(v)
                links.append(link[:, :, i:i + 1])
            cache.update(row=i, links=links)
        h = shift_right(e[:, :, i:i + 1])
        for block, link in zip(self.blocks, cache["links"]):
            h = block.horizontal(h, link)
        return self.out(h)[:, :, 0, j]
