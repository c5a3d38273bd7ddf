"""The "diffusion" family: its typed config and the builder the registry calls (style.md habit 8).

    lowerbound train diffusion --data digits --set variance=learned_range --set loss=hybrid

builds a `Diffusion` (ddpm.py) around a UNet (nets/unet.py) for image data [C, H, W], or a TimeMLP
(nets/time_mlp.py) for vector data [d]; `net = "mlp"` forces the MLP on flattened images too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from ...errors import UserError
from ...nets.time_mlp import TimeMLP
from ..registry import register
from .ddpm import Diffusion, LossName, Parameterization, Variance
from .options import UNetOptions, unet_from_options
from .schedule import ScheduleName
from .timesteps import TimestepSampling


@dataclass
class MLPOptions:
    """Sizes of the TimeMLP used for vector data."""

    width: int = 256
    depth: int = 2
    emb_dim: int = 64
    dropout: float = 0.3  # digits overfit in about a minute: dropout and early stopping decide the bound


@dataclass
class DiffusionConfig:
    """Options of the discrete-time diffusion model (Ho et al. 2020; Nichol & Dhariwal 2021).

    The defaults are the best configuration measured on digits-bpd (benchmarks/digits_diffusion.py,
    chosen on validation): trained on the bound itself with learned variances and importance-sampled
    timesteps, a cosine schedule, and the categorical parameterization.  "auto" choices: net is the
    UNet for square images (on digits it reaches 1.73 bits/dim where the TimeMLP, 2-3x faster per
    step on a CPU, overfits at 2.07: benchmarks/digits_net_shape.py), the TimeMLP for vectors and
    other shapes; parameterization is categorical for discrete data, eps otherwise.
    Diffusion() itself keeps the DDPM defaults (eps, fixed_large, L_simple, linear).  The family
    trains at precision "auto" (bf16 where the hardware has it: on digits the validation curve of
    2500 steps matched fp32's to 0.01 bits/dim, digits_net_shape_diffusion_bf16.json).
    """

    net: Literal["auto", "unet", "mlp"] = "auto"
    unet: UNetOptions = field(default_factory=UNetOptions)
    mlp: MLPOptions = field(default_factory=MLPOptions)
    timesteps: int = 1000
    schedule: ScheduleName = "cosine"
    parameterization: Literal["auto", "eps", "x0", "v", "categorical"] = "auto"
    variance: Variance = "learned_range"
    loss: LossName = "vlb"
    timestep_sampling: TimestepSampling = "importance"
    hybrid_weight: float = 1e-3
    clip_x0: bool = False
    chunk: int = 4096


class _Flat(nn.Module):
    """Runs a vector net on flattened examples: [B, *shape] -> [B, m * shape[0], *shape[1:]]."""

    def __init__(self, inner: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.inner, self.shape = inner, shape

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.inner(x.flatten(1), t)
        return out.reshape(x.shape[0], -1, *self.shape[1:])


def make_net(config: DiffusionConfig, levels: int | None, shape: tuple[int, ...]) -> nn.Module:
    """The denoising network for examples of `shape`, with the output channels Diffusion.net_channels
    asks for (twice the input's for learned variances, K times for categorical)."""
    mult = Diffusion.net_channels(1, levels, _parameterization(config, levels), config.variance)
    kind = config.net
    if kind == "auto":
        kind = "unet" if len(shape) == 3 and shape[1] == shape[2] else "mlp"
    if kind == "unet":
        if len(shape) != 3 or shape[1] != shape[2]:
            raise UserError(f"The UNet needs square images [C, H, W], got examples of shape {shape}; "
                            "use net mlp.")
        return unet_from_options(config.unet, shape[0], mult * shape[0], shape[1])
    o, d = config.mlp, math.prod(shape)
    try:
        mlp = TimeMLP(d, mult * d, width=o.width, depth=o.depth, emb_dim=o.emb_dim, dropout=o.dropout)
    except ValueError as e:
        raise UserError(f"Invalid mlp options: {e}.") from None
    return mlp if len(shape) == 1 else _Flat(mlp, shape)


def _parameterization(config: DiffusionConfig, levels: int | None) -> Parameterization:
    if config.parameterization == "auto":
        return "categorical" if levels is not None else "eps"
    return config.parameterization


@register("diffusion", DiffusionConfig,
          "discrete-time diffusion (DDPM), trained by L_simple, the bound, or both; DDPM bound in bits/dim",
          train_defaults={"precision": "auto"})
def build(config: DiffusionConfig, levels: int | None, shape: tuple[int, ...]) -> Diffusion:
    parameterization = _parameterization(config, levels)
    if parameterization == "categorical" and levels is None:
        raise UserError("parameterization categorical needs discrete data (levels); use eps, x0 or v.")
    return Diffusion(make_net(config, levels, shape), levels=levels, shape=shape, timesteps=config.timesteps,
                     schedule=config.schedule, parameterization=parameterization,
                     variance=config.variance, loss=config.loss,
                     timestep_sampling=config.timestep_sampling, hybrid_weight=config.hybrid_weight,
                     clip_x0=config.clip_x0, chunk=config.chunk, config=config)
