"""A causal transformer over the raster order (Vaswani et al. 2017, decoder only; pre-norm as in
GPT-2, Radford et al. 2019; on images as in the Image Transformer, Parmar et al. 2018, and the
Sparse Transformer, Child et al. 2019, here with dense attention).

    e [B, F, H, W] (features of every position)  ->  h [B, F, H, W],  h at raster position t a
    function of e at positions < t only.

The input sequence is [start, e_0, ..., e_{N-2}] plus learned position embeddings, so the output at
position t has seen exactly the positions before t.  Blocks are pre-norm: x + attn(LN(x)), then
x + MLP(LN(x)), with dropout on the embeddings, the attention weights and both residual branches.

Sampling runs one position at a time with a key/value cache: `step(e, t, cache)` appends position
t's keys and values to the cache and attends its one query over everything cached, so N steps cost
what one full pass costs instead of N full passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention, causal in the sequence; with a key/value cache when one is given."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, cache: dict | None = None, key: int = 0) -> Tensor:
        """x [B, T, F] -> [B, T, F].  With a cache, x holds the next positions after those cached."""
        b, t, f = x.shape
        q, k, v = (z.view(b, t, self.heads, f // self.heads).transpose(1, 2)
                   for z in self.qkv(x).split(f, dim=-1))
        causal = True
        if cache is not None:
            if key in cache:
                k, v = torch.cat([cache[key][0], k], 2), torch.cat([cache[key][1], v], 2)
            cache[key] = (k, v)
            causal = t > 1  # one new query may see every cached position
            if causal and k.shape[2] != t:
                raise ValueError("a cached step takes one position at a time")
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, f))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: dict | None = None, key: int = 0) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache, key))
        return x + self.drop(self.mlp(self.ln2(x)))


class CausalTransformer(nn.Module):
    """e [B, width, H, W] -> h [B, width, H, W] over `positions` = H * W raster positions."""

    def __init__(self, width: int, layers: int, heads: int, positions: int, dropout: float = 0.0):
        super().__init__()
        if layers < 1 or positions < 1:
            raise ValueError(f"layers and positions must be positive, got {layers}, {positions}")
        self.start = nn.Parameter(torch.zeros(width))
        self.pos = nn.Parameter(0.02 * torch.randn(positions, width))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, e: Tensor) -> Tensor:
        b, f, h, w = e.shape
        seq = e.flatten(2).transpose(1, 2)  # [B, N, F] in raster order
        x = torch.cat([self.start.expand(b, 1, f), seq[:, :-1]], 1) + self.pos[:h * w]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).transpose(1, 2).reshape(b, f, h, w)

    def step(self, e: Tensor, t: int, cache: dict) -> Tensor:
        """The output at raster position t, [B, width], given the cache of positions 0..t-1 (steps
        must come in order t = 0, 1, ...; only e's position t - 1 is read)."""
        b, f = e.shape[:2]
        token = self.start.expand(b, f) if t == 0 else e.flatten(2)[:, :, t - 1]
        x = self.drop(token + self.pos[t]).unsqueeze(1)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        return self.norm(x)[:, 0]
