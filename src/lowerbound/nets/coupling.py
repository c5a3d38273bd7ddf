"""The convolutional net inside a Glow affine coupling layer, tensor -> tensor (Kingma & Dhariwal 2018,
"Glow", sec. 3.3): 3x3 convolution, ReLU, 1x1 convolution, ReLU, then a zero-initialised 3x3
convolution, so that every coupling starts as the identity map (shift 0, scale from a constant).

Optional dropout between the hidden layers regularizes small data sets (digits overfit in seconds).
"""

from __future__ import annotations

from torch import Tensor, nn


class CouplingCNN(nn.Module):
    """[B, in_channels, H, W] -> [B, out_channels, H, W]; the last layer starts at exactly zero."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, dropout: float = 0.0):
        super().__init__()
        drop = [nn.Dropout(dropout)] if dropout else []
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), *drop,
            nn.Conv2d(width, width, 1), nn.ReLU(), *drop,
            nn.Conv2d(width, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
