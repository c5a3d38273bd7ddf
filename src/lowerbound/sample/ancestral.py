"""Ancestral sampling of a diffusion model: every reverse step (Ho et al. 2020, algorithm 2, for the
discrete-time `diffusion`; Kingma et al. 2021, App. A.4, on a grid of T steps for the continuous-time
`vdm`).

x_T ~ N(0, I); x_{t-1} ~ p(x_{t-1} | x_t) for t = T..2; then the decoder's most likely level given
x_1 (for continuous data, its mean).  The model supplies the loop (Diffusion.sample, VDM.sample);
this function owns the batching, the bar over net calls and the precision (sample.batches).

The batches draw from one generator in turn, so a sample depends on the batch size: batch b's x_T
and its T per-step noises are drawn after all of batch b - 1's.  Making each sample's draws
independent of the batching would mean one generator per sample (a random-number call per sample and
step) or every noise drawn ahead (n T D numbers); the samples' distribution does not depend on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UserError
from ..models.diffusion.ddpm import Diffusion
from ..models.diffusion.vdm import VDM
from .batches import batch_sizes, in_batches


def check_request(model, n: int, batch_size: int, kinds: tuple[type, ...] = (Diffusion,)) -> None:
    """One clear sentence for a request a diffusion sampler cannot serve."""
    if not isinstance(model, kinds):
        raise UserError(f"This sampler needs a {' or '.join(k.family for k in kinds)} model, got "
                        f"{type(model).__name__}.")
    batch_sizes(n, batch_size)


def net_calls(model: Diffusion | VDM, steps: int | None = None) -> int:
    """Net calls of one ancestral batch: T for the DDPM (T - 1 reverse steps and the decoder's mean),
    `steps` (default config.sample_steps) for the VDM, whose decoder needs no net."""
    if isinstance(model, VDM):
        return steps or model.config.sample_steps
    if steps not in (None, model.timesteps):
        raise UserError(f"The diffusion model's ancestral sampler runs all its {model.timesteps} steps; "
                        "use the ddim sampler for fewer.")
    return model.timesteps


@torch.no_grad()
def ancestral(model: Diffusion | VDM, n: int, *, generator: torch.Generator | None = None,
              progress: bool = True, batch_size: int = 256, steps: int | None = None,
              precision: str = "fp32") -> Tensor:
    """n samples in batches of batch_size: levels [n, *shape] (long), or floats for continuous data.

    Each batch is the model's own loop (eval mode for the duration, the training flag restored);
    steps: the VDM's grid (default its config.sample_steps); precision: fp32, bf16 or fp16 (CUDA)."""
    check_request(model, n, batch_size, (Diffusion, VDM))
    calls = net_calls(model, steps)
    kwargs = {"steps": calls} if isinstance(model, VDM) else {}
    was_training = model.training
    model.eval()
    try:
        return in_batches(lambda size: model.sample(size, generator, progress=False, **kwargs), n, batch_size,
                          calls, device=model.device, precision=precision, progress=progress,
                          desc=f"{model.family} ancestral")
    finally:
        model.train(was_training)
