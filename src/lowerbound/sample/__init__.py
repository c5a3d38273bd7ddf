"""Samplers as free functions with one signature (style.md habit 4):

    fn(model, n, *, generator=None, progress=True, batch_size=..., precision="fp32") -> samples in the
    data's layout

ancestral: every reverse step of a diffusion model, DDPM (Ho et al. 2020) or VDM (Kingma et al. 2021).
ddim: any number of steps, eta in [0, 1] (Song et al. 2021).
batches: what they share: batches, one bar over all net calls, inference mode, autocast.
"""

from .ancestral import ancestral
from .batches import PRECISIONS
from .ddim import ddim, ddim_steps

__all__ = ["ancestral", "ddim", "ddim_steps", "PRECISIONS"]
