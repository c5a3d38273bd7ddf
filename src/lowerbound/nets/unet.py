"""A small UNet for diffusion on images: net(x_t [B, C, H, W], t [B] in [0, 1]) -> [B, C_out, H, W].

The architecture of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", appendix B) as
refined by Nichol & Dhariwal 2021 ("Improved DDPM"): a sinusoidal timestep embedding added to every
residual block, GroupNorm + SiLU residual blocks, self-attention at the low resolutions, skip
connections from each down block to its mirror up block, zero-initialized output layers so every
block starts as the identity.  It knows nothing of noise schedules (style.md habit 2); the model
decides what the output means (eps, x0 or v, and a second set of channels for learned variances).

Defaults fit 8x8 digits on a CPU (channels=32, channel_mult=(1, 2)); channel_mult=(1, 2, 2, 2) with
channels=128 and attention at 16 is the 32x32 CIFAR-10 network of Ho et al., by configuration alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import TimeEmbedding


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # fall back to fewer groups when a width is not divisible, rather than refusing a config
    g = groups
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class ResBlock(nn.Module):
    """h -> skip(h) + conv(drop(SiLU(GN(conv(SiLU(GN(h))) + W temb)))).

    [B, c_in, H, W] -> [B, c_out, H, W]; temb [B, emb]."""

    def __init__(self, c_in: int, c_out: int, emb: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(emb, c_out)
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        u = self.conv1(F.silu(self.norm1(h))) + self.time(temb)[:, :, None, None]
        u = self.conv2(self.drop(F.silu(self.norm2(u))))
        return self.skip(h) + u


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, [B, C, H, W] -> same."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention width {channels} is not divisible by {heads} heads")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, h: Tensor) -> Tensor:
        b, c, hh, ww = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(b, 3, self.heads, c // self.heads, hh * ww).unbind(1)
        # [B, heads, HW, c/heads] for scaled_dot_product_attention
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return h + self.proj(out.transpose(-1, -2).reshape(b, c, hh, ww))


class _Level(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution."""

    def __init__(self, widths: list[tuple[int, int]], emb: int, attn: bool, heads: int, dropout: float,
                 groups: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, emb, dropout, groups) for a, b in widths)
        self.attns = nn.ModuleList(
            Attention(b, heads, groups) if attn else nn.Identity() for _, b in widths)


class UNet(nn.Module):
    """net(x [B, in_channels, H, W], t [B]) -> [B, out_channels, H, W].

    channels: base width; channel_mult: width multiplier per resolution (one entry per level; each
    level after the first halves H and W); num_res_blocks: residual blocks per level on the way
    down (one more on the way up, for the extra skip); attention_resolutions: spatial sizes (e.g.
    (4,) for 4x4) that get self-attention; image_size: H (= W), needed to place the attention and
    to check that H is divisible by 2^(levels - 1).
    """

    def __init__(self, in_channels: int, out_channels: int, *, image_size: int, channels: int = 32,
                 channel_mult: tuple[int, ...] = (1, 2), num_res_blocks: int = 1,
                 attention_resolutions: tuple[int, ...] = (4,), dropout: float = 0.1, heads: int = 1,
                 groups: int = 8):
        super().__init__()
        levels = len(channel_mult)
        if levels < 1 or num_res_blocks < 1 or channels < 1:
            raise ValueError("UNet needs at least one level, one residual block and one channel")
        if image_size % (2 ** (levels - 1)):
            raise ValueError(f"image size {image_size} is not divisible by 2^{levels - 1} "
                             f"for {levels} resolution levels")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.embed = TimeEmbedding(channels)
        emb = self.embed.out_dim
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)

        widths = [channels * m for m in channel_mult]
        skips = [channels]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c, size = channels, image_size
        for lvl, w in enumerate(widths):
            pairs = [(c if j == 0 else w, w) for j in range(num_res_blocks)]
            self.down.append(_Level(pairs, emb, size in attention_resolutions, heads, dropout, groups))
            c = w
            skips += [w] * num_res_blocks
            if lvl < levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                size //= 2
        self.mid1 = ResBlock(c, c, emb, dropout, groups)
        self.mid_attn = Attention(c, heads, groups)
        self.mid2 = ResBlock(c, c, emb, dropout, groups)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for lvl, w in reversed(list(enumerate(widths))):
            pairs = []
            for _ in range(num_res_blocks + 1):
                pairs.append((c + skips.pop(), w))
                c = w
            self.up.append(_Level(pairs, emb, size in attention_resolutions, heads, dropout, groups))
            if lvl > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
                size *= 2
        self.out = nn.Sequential(_norm(c, groups), nn.SiLU(), _zero(nn.Conv2d(c, out_channels, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects x of shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        temb = self.embed(t).to(x.dtype)
        h = self.inp(x)
        hs = [h]
        for lvl, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h, temb))
                hs.append(h)
            if lvl < len(self.downsample):
                h = self.downsample[lvl](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for lvl, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(torch.cat([h, hs.pop()], 1), temb))
            if lvl < len(self.upsample):
                h = self.upsample[lvl](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
