"""Samplers as free functions with one signature (style.md habit 4):

    fn(model, n, *, generator=None, progress=True, batch_size=...) -> samples in the data's layout

ancestral: all T reverse steps of a discrete-time diffusion model (Ho et al. 2020).
ddim: any number of steps, eta in [0, 1] (Song et al. 2021).
"""

from .ancestral import ancestral
from .batches import PRECISIONS
from .ddim import ddim, ddim_steps

__all__ = ["ancestral", "ddim", "ddim_steps", "PRECISIONS"]
