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

from ..errors import UserError
from ..models import work
from ..models.diffusion.ddpm import Diffusion
from .ancestral import check_request
from .batches import in_batches


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
         generator: torch.Generator | None = None, progress: bool = True, batch_size: int = 256,
         precision: str = "fp32") -> Tensor:
    """n samples through `steps` model calls each: levels [n, *shape] (long), or floats for continuous
    data; in batches of batch_size (sample.batches: one bar over all net calls; precision fp32, bf16 or
    fp16 on CUDA).  Starts from x_T ~ N(0, I) whatever the subsequence, since q(x_T) is close to
    N(0, I).  Every x_T is drawn before the first batch, so with eta = 0 (no other randomness) the
    samples do not depend on batch_size (bitwise, where the net's arithmetic for one example does not
    depend on the batch around it: so for our MLP and UNet on this project's CPUs); with eta > 0 each
    batch's step noise follows the batch before's on the one generator (sample.ancestral's docstring)."""
    check_request(model, n, batch_size)
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"DDIM eta must be in [0, 1], got {eta}.")
    grid = ddim_steps(model.timesteps, steps)
    x_T = torch.randn((n, *model.shape), generator=generator, device=model.device)
    done = [0]

    def one_batch(size: int) -> Tensor:
        x = x_T[done[0]:done[0] + size]
        done[0] += size
        return _ddim_batch(model, x, grid, eta, generator)

    was_training = model.training
    model.eval()
    try:
        return in_batches(one_batch, n, batch_size, len(grid), device=model.device, precision=precision,
                          progress=progress, desc="ddim")
    finally:
        model.train(was_training)


def _ddim_batch(model: Diffusion, x: Tensor, grid: list[int], eta: float,
                generator: torch.Generator | None) -> Tensor:
    """One batch from x_T [B, *shape] down the grid, then the decoder: len(grid) net calls."""
    abar = model.schedule.alpha_bar
    for t, s in zip(grid[:-1], grid[1:]):
        pred = model.predict(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        a_t, a_s = abar[t].item(), abar[s].item()
        sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)) ** 0.5
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64)
        x = (a_s ** 0.5 * pred["x0"] + max(1 - a_s - sigma ** 2, 0.0) ** 0.5 * pred["eps"]
             + sigma * z).to(x.dtype)
        work.advance(1)
    out = model.decode(x)
    work.advance(1)
    return out
