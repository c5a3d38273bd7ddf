"""Ancestral sampling of a discrete-time diffusion model: all T reverse steps (Ho et al. 2020, algorithm 2).

x_T ~ N(0, I); x_{t-1} ~ p(x_{t-1} | x_t) for t = T..2; then the decoder's most likely level given
x_1 (for continuous data, its mean).  The model supplies the steps (Diffusion.reverse_step and
Diffusion.decode); this function owns the loop, the batching and the progress bar.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

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

    The model is put in eval mode for the duration (dropout off) and restored afterwards."""
    check_request(model, n, batch_size)
    was_training = model.training
    model.eval()
    try:
        chunks = []
        sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
        bar = tqdm(total=len(sizes) * (model.timesteps - 1), desc="ancestral", disable=not progress,
                   leave=False)
        for size in sizes:
            x = torch.randn((size, *model.shape), generator=generator, device=model.device)
            for i in range(model.timesteps, 1, -1):
                x = model.reverse_step(x, i, generator)
                bar.update(1)
            chunks.append(model.decode(x))
        bar.close()
        return torch.cat(chunks)
    finally:
        model.train(was_training)
