"""`TimeMLP`: a residual MLP conditioned on a diffusion time t, for vector data (toy 2-D densities).

The vector-data counterpart of the UNet (Ho et al. 2020): x_t [B, d_in] and t [B] in [0, 1] go in,
a tensor [B, d_out] (eps, x0 or v, as the model decides) comes out.  The time enters every residual
block through a sinusoidal embedding (nets/embedding.py) projected to the block's width, the way the
UNet's residual blocks take it.  The net knows nothing about schedules or losses (style.md habit 2).
"""

from __future__ import annotations

from torch import Tensor, nn

from .embedding import TimeEmbedding


class _Block(nn.Module):
    """h -> h + W2 SiLU(W1 SiLU(LN h) + P temb): a pre-norm residual block with a time shift."""

    def __init__(self, width: int, emb: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.time = nn.Linear(emb, width)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        u = self.fc1(self.act(self.norm(h))) + self.time(temb)
        return h + self.fc2(self.drop(self.act(u)))


class TimeMLP(nn.Module):
    """net(x_t [B, d_in], t [B]) -> [B, d_out] (d_out defaults to d_in).

    width: hidden width; depth: number of residual blocks; emb_dim: size of the sinusoidal
    features of t (the embedding MLP widens them to 4 * emb_dim); time_scale: t is multiplied by
    it before the sinusoids (1000 puts the steps i/T of a T = 1000 chain on integers).
    """

    def __init__(self, d_in: int, d_out: int | None = None, *, width: int = 256, depth: int = 3,
                 emb_dim: int = 64, dropout: float = 0.0, time_scale: float = 1000.0):
        super().__init__()
        if d_in < 1 or width < 1 or depth < 0:
            raise ValueError(f"TimeMLP needs d_in >= 1, width >= 1, depth >= 0; got "
                             f"{d_in}, {width}, {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_in = d_in
        self.d_out = d_out if d_out is not None else d_in
        self.embed = TimeEmbedding(emb_dim, scale=time_scale)
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(_Block(width, self.embed.out_dim, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, self.d_out))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"TimeMLP expects x of shape [B, {self.d_in}], got {tuple(x.shape)}")
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"TimeMLP expects t of shape [{x.shape[0]}], got {tuple(t.shape)}")
        temb = self.embed(t).to(x.dtype)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)
