"""Models trained elsewhere, wrapped to keep our contract (design.md: the adapters room).

    from_diffusers(unet, scheduler)          a diffusers UNet + DDPM/DDIM scheduler -> our DDPM bound
    load_diffusers(folder, levels=K)         the same, from a folder written by save_pretrained
    from_denoiser(net, betas=..., ...)       any eps / x0 / v denoiser net(x_t, t) -> our DDPM bound
    from_flow(obj, levels, shape)            any density with log_prob(x) -> a dequantized bound

Each returns a model with loss / bound / sample, so eval, compare and the sample metrics take it like
one of ours.  Optional packages (diffusers) are imported only where they are used (style.md habit 12).
"""

from __future__ import annotations

from .denoiser import from_denoiser
from .diffusers import from_diffusers, load_diffusers
from .flow import DequantizedFlow, from_flow

__all__ = ["DequantizedFlow", "from_denoiser", "from_diffusers", "from_flow", "load_diffusers"]
