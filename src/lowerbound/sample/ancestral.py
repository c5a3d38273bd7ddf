"""Ancestral sampling of a discrete-time diffusion model: all T reverse steps (Ho et al. 2020, algorithm 2).

x_T ~ N(0, I); x_{t-1} ~ p(x_{t-1} | x_t) for t = T..2; then the decoder's most likely level given
x_1 (for continuous data, its mean).  The model supplies the steps (Diffusion.reverse_step and
Diffusion.decode) and their loop (Diffusion.sample); this function owns the batching.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from ..models.diffusion.ddpm import Diffusion


def check_request(model, n: int, batch_size: int) -> None:
    """One clear sentence for a request a diffusion sampler cannot serve."""
    if not isinstance(model, Diffusion):
        raise UserError(f"This sampler needs a discrete-time diffusion model, got {type(model).__name__}.")
    if n < 1 or batch_size < 1:
        raise UserError(f"Ask for at least one sample in batches of at least one, got n={n}, "
                        f"batch_size={batch_size}.")


@torch.no_grad()
def ancestral(model: Diffusion, n: int, *, generator: torch.Generator | None = None, progress: bool = True,
              batch_size: int = 256) -> Tensor:
    """n samples in batches of batch_size: levels [n, *shape] (long), or floats for continuous data.

    Each batch is the model's own T-step loop (Diffusion.sample: eval mode for the duration, the
    training flag restored); this function adds the batching, so any n fits in memory."""
    check_request(model, n, batch_size)
    sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    return torch.cat([model.sample(size, generator, progress=progress) for size in sizes])
