"""DDIM sampling: any number of steps, eta in [0, 1] (Song, Meng & Ermon 2021, "Denoising Diffusion
Implicit Models", eq. 12).

On a decreasing subsequence tau_S = T > ... > tau_1 = 1 of the model's steps,

    x_{s} = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s),

from step t to the next step s < t; eta = 0 is deterministic (DDIM), eta = 1 matches the ancestral
sampler's fixed_small variances on the subsequence.  At tau_1 = 1 the model's decoder returns its most
likely level, as the ancestral sampler does.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import UserError
from ..models.diffusion.ddpm import Diffusion
from .ancestral import check_request


def ddim_steps(timesteps: int, steps: int) -> list[int]:
    """The decreasing subsequence: `steps` steps evenly spread over T..1, both ends included."""
    if not 1 <= steps <= timesteps:
        raise UserError(f"DDIM steps must be between 1 and the model's {timesteps} timesteps, got {steps}.")
    if steps == 1:
        return [1]
    grid = torch.linspace(timesteps, 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(grid), reverse=True)


@torch.no_grad()
def ddim(model: Diffusion, n: int, *, steps: int = 50, eta: float = 0.0,
         generator: torch.Generator | None = None, progress: bool = True, batch_size: int = 256) -> Tensor:
    """n samples through `steps` model calls each: levels [n, *shape] (long), or floats for continuous
    data.  Starts from x_T ~ N(0, I) whatever the subsequence, since q(x_T) is close to N(0, I)."""
    check_request(model, n, batch_size)
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"DDIM eta must be in [0, 1], got {eta}.")
    grid = ddim_steps(model.timesteps, steps)
    abar = model.schedule.alpha_bar
    was_training = model.training
    model.eval()
    try:
        chunks = []
        sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
        bar = tqdm(total=len(sizes) * len(grid), desc="ddim", disable=not progress, leave=False)
        for size in sizes:
            x = torch.randn((size, *model.shape), generator=generator, device=model.device)
            for t, s in zip(grid[:-1], grid[1:]):
                pred = model.predict(x, torch.full((size,), t, dtype=torch.long, device=x.device))
                a_t, a_s = abar[t].item(), abar[s].item()
                sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)) ** 0.5
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64)
                x = (a_s ** 0.5 * pred["x0"] + max(1 - a_s - sigma ** 2, 0.0) ** 0.5 * pred["eps"]
                     + sigma * z).to(x.dtype)
                bar.update(1)
            chunks.append(model.decode(x))
            bar.update(1)
        bar.close()
        return torch.cat(chunks)
    finally:
        model.train(was_training)
