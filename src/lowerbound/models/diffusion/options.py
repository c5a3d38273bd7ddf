"""The UNet's sizes as a typed option block, shared by the diffusion and VDM families.

    lowerbound train vdm --data digits --set unet.channels=64 --set unet.channel_mult=[1,2]

builds nets/unet.py's UNet (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021) from them; a size
the UNet refuses becomes a one-line UserError naming the option block.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...errors import UserError


@dataclass
class UNetOptions:
    """Sizes of the UNet; the defaults fit 8x8 digits on a CPU (nets/unet.py documents each)."""

    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (4,)
    dropout: float = 0.1
    heads: int = 1
    groups: int = 8


def unet_from_options(o: UNetOptions, in_channels: int, out_channels: int, image_size: int) -> nn.Module:
    """The UNet of these sizes for square images [in_channels, image_size, image_size]."""
    from ...nets.unet import UNet  # lazily: only image models pay for it

    try:
        return UNet(in_channels, out_channels, image_size=image_size, channels=o.channels,
                    channel_mult=tuple(o.channel_mult), num_res_blocks=o.num_res_blocks,
                    attention_resolutions=tuple(o.attention_resolutions), dropout=o.dropout,
                    heads=o.heads, groups=o.groups)
    except ValueError as e:
        raise UserError(f"Invalid unet options: {e}.") from None
