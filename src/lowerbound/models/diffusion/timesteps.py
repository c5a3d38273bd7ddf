"""Which timestep to train on: uniform, or importance-sampled from each L_t's running second moment.

Nichol & Dhariwal 2021 ("Improved DDPM", sec. 3.3): L_vlb = E_{t ~ p_t}[L_t / p_t] with
p_t proportional to sqrt(E[L_t^2]), estimated from the last `history` values of each L_t.  Until every
step has that many values the sampler stays uniform; a small uniform share (`uniform_mix`) keeps
every p_t > 0 so the estimator stays unbiased.  The history lives in buffers, so it is saved and
restored with the model's state_dict.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

TimestepSampling = Literal["uniform", "importance"]


class TimestepSampler(nn.Module):
    """Draws steps i in 1..T with their probabilities p_i; `update` feeds back observed L_i."""

    def __init__(self, timesteps: int, mode: TimestepSampling = "uniform", history: int = 10,
                 uniform_mix: float = 1e-3):
        super().__init__()
        if mode not in ("uniform", "importance"):
            raise ValueError(f"timestep sampling must be uniform or importance, got {mode!r}")
        if history < 1 or not 0.0 < uniform_mix <= 1.0:
            raise ValueError("history must be >= 1 and uniform_mix in (0, 1]")
        self.timesteps, self.mode, self.uniform_mix = timesteps, mode, uniform_mix
        self.register_buffer("history", torch.zeros(timesteps, history, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(timesteps, dtype=torch.long))

    @property
    def warm(self) -> bool:
        """True once every step has a full history (importance weights are used from then on)."""
        return bool((self.count >= self.history.shape[1]).all())

    def probabilities(self) -> Tensor:
        """[T] float64: p_i for i = 1..T, summing to 1."""
        uniform = torch.full((self.timesteps,), 1.0 / self.timesteps, dtype=torch.float64,
                             device=self.history.device)
        if self.mode == "uniform" or not self.warm:
            return uniform
        w = self.history.pow(2).mean(1).sqrt()
        w = w / w.sum()
        return w * (1 - self.uniform_mix) + uniform * self.uniform_mix

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """(i [n] long in 1..T, p_i [n] float64), drawn independently."""
        p = self.probabilities()
        if self.mode == "uniform" or not self.warm:
            i = torch.randint(1, self.timesteps + 1, (n,), generator=generator, device=p.device)
        else:
            i = torch.multinomial(p, n, replacement=True, generator=generator) + 1
        return i.to(device or p.device), p[i - 1].to(device or p.device)

    @torch.no_grad()
    def update(self, i: Tensor, losses: Tensor) -> None:
        """Record L_i [n] (nats) observed at steps i [n], in order; a step drawn several times in one
        call fills several consecutive slots of its ring buffer, as if the values came one by one."""
        if self.mode == "uniform" or i.numel() == 0:
            return
        size = self.history.shape[1]
        idx = i.to(self.count.device).long() - 1
        order = torch.argsort(idx, stable=True)
        idx, values = idx[order], losses.detach().to(self.history)[order]
        _, counts = torch.unique_consecutive(idx, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(idx.numel(), device=idx.device) - starts.repeat_interleave(counts)
        keep = rank >= counts.repeat_interleave(counts) - size  # only the last `size` values survive
        slot = (self.count[idx] + rank) % size
        self.history[idx[keep], slot[keep]] = values[keep]
        self.count.index_add_(0, idx, torch.ones_like(idx))
