"""Autoregressive models: the exact likelihood every other family's bound is measured against.

    log P(x) = sum_d log P(x_d | x_<d)        (chain rule; no bound, estimator "exact")

The dimensions are ordered pixel by pixel in raster order and, within a pixel, channel by channel
(R, then G given R, then B given R and G), as in PixelRNN/PixelCNN (van den Oord et al. 2016).
A causal net (nets/pixelcnn.py, the gated PixelCNN without a blind spot; or nets/transformer.py,
a causal transformer) turns the levels of the pixels before each pixel into a context h; a small
channel head adds the levels of the earlier channels of the same pixel and emits the parameters
of P(x_d | x_<d): a categorical over the K levels, or the discretized logistic mixture of
PixelCNN++ (Salimans et al. 2017), both from decoders.py.

Vectors [D] are sequences of D one-channel "pixels" (shape (1, 1, D)); any other layout is flattened
the same way.  Sampling is ancestral: one net step per pixel (the transformer keeps a key/value
cache), one head call per channel.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..nets.pixelcnn import PixelCNN
from ..nets.transformer import CausalTransformer
from ..prob.bound import Bound
from ..prob.units import to_signed
from .base import GenerativeModel
from .decoders import make_decoder
from .registry import register

CATEGORICAL_MAX_LEVELS = 64  # output "auto": a categorical up to this many levels, else the logistic


@dataclass
class AutoregressiveConfig:
    arch: Literal["auto", "pixelcnn", "transformer"] = "auto"  # auto: pixelcnn for images, else transformer
    output: Literal["auto", "categorical", "logistic-mixture"] = "auto"  # auto: categorical for K <= 64
    mixtures: int = 5  # components of the logistic mixture
    width: int = 64  # features per position
    layers: int = 6
    kernel: int = 3  # pixelcnn: odd kernel size of the vertical stack
    heads: int = 4  # transformer: attention heads (width must be divisible)
    dropout: float = 0.5  # digits overfit in minutes: dropout and early stopping decide the number
    weight_decay: float | None = None  # AdamW decay of the weights (not biases/norms); None: the run's

    def __post_init__(self) -> None:
        checks = [
            (self.mixtures >= 1, f"mixtures must be >= 1, got {self.mixtures}"),
            (self.width >= 1 and self.layers >= 1, "width and layers must be positive"),
            (self.kernel >= 3 and self.kernel % 2 == 1, f"kernel must be odd and >= 3, got {self.kernel}"),
            (self.heads >= 1, f"heads must be >= 1, got {self.heads}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.weight_decay is None or self.weight_decay >= 0, "weight_decay must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"The autoregressive option {message}.")


def image_view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) the data layout is read as: images as they are, [H, W] as one channel, anything
    else as a row of one-channel pixels (a vector [D] is (1, 1, D))."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return 1, 1, math.prod(shape)


class ChannelHead(nn.Module):
    """Per pixel: the output parameters of channel c from the context h and the levels of channels
    c' < c of the same pixel.  h [B, F, N], x [B, C, N] -> [B, P, C, N]."""

    def __init__(self, width: int, channels: int, levels: int, params: int):
        super().__init__()
        self.channels, self.levels, self.params = channels, levels, params
        # one embedding of x_c' for each ordered pair c' < c (rows for c' >= c are never read)
        self.earlier = nn.Embedding(channels * channels * levels, width) if channels > 1 else None
        cw = channels * width  # the channels' features side by side: grouped 1x1 convs, one MLP each
        self.mlp = nn.Sequential(nn.GELU(), nn.Conv1d(cw, cw, 1, groups=channels),
                                 nn.GELU(), nn.Conv1d(cw, channels * params, 1, groups=channels))

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        b, f, n = h.shape
        per_channel = []
        for c in range(self.channels):
            z = h
            for c_earlier in range(c):
                index = x[:, c_earlier] + (c * self.channels + c_earlier) * self.levels
                z = z + self.earlier(index).transpose(1, 2)
            per_channel.append(z)
        out = self.mlp(torch.cat(per_channel, 1))  # [B, C * P, N], channel-major
        return out.view(b, self.channels, self.params, n).transpose(1, 2)


class Autoregressive(GenerativeModel):
    """An autoregressive model of discrete data with `levels` of one example's `shape`."""

    family = "autoregressive"
    estimators = ("exact",)
    iterative_sampler = True  # one net step per pixel: grids at the end of training only

    def __init__(self, config: AutoregressiveConfig, levels: int | None, shape: tuple[int, ...]):
        if levels is None:
            raise UserError("The autoregressive family models discrete data with levels; this data set "
                            "is continuous (try flow or a discretized data set).")
        super().__init__(levels=levels, shape=shape, config=config)
        c = self.config = resolve_auto(config, levels, self.shape)
        self.image = image_view(self.shape)
        channels, height, width = self.image
        decoder = "categorical" if c.output == "categorical" else "discretized-logistic"
        options = {"mixtures": c.mixtures} if decoder == "discretized-logistic" else {}
        self.likelihood = make_decoder(decoder, levels, self.shape, **options)
        self.embed = nn.Embedding(channels * levels, c.width)
        self.embed_value = nn.Conv2d(channels, c.width, 1)  # the level as a number: ordinal information
        self.register_buffer("offsets", torch.arange(channels).view(1, channels, 1, 1) * levels,
                             persistent=False)
        if c.arch == "pixelcnn":
            self.net = PixelCNN(c.width, c.layers, c.kernel, c.dropout)
        else:
            if c.width % c.heads:
                raise UserError(f"The autoregressive option width ({c.width}) must be divisible by heads "
                                f"({c.heads}).")
            self.net = CausalTransformer(c.width, c.layers, c.heads, height * width, c.dropout)
        self.head = ChannelHead(c.width, channels, levels, self.likelihood.num_params)

    # ------------------------------------------------------------ the net
    def _grid(self, x: Tensor) -> Tensor:
        return x.long().reshape(x.shape[0], *self.image)

    def _features(self, grid: Tensor) -> Tensor:
        """Levels [B, C, H, W] -> features [B, F, H, W] of every pixel (all its channels)."""
        dtype = self.embed.weight.dtype
        e = self.embed(grid + self.offsets).sum(1).permute(0, 3, 1, 2)
        return e + self.embed_value(to_signed(grid, self.levels).to(dtype))

    def params(self, x: Tensor) -> Tensor:
        """The parameters of every conditional P(x_d | x_<d), one full pass: [B, P, *shape]."""
        grid = self._grid(x)
        h = self.net(self._features(grid))
        out = self.head(h.flatten(2), grid.flatten(2))  # [B, P, C, H * W]
        return out.reshape(x.shape[0], out.shape[1], *self.shape)

    def conditionals(self, x: Tensor) -> Tensor:
        """log P(x_d = k | x_<d) for every level k and dimension d: [B, K, *shape] nats."""
        return self.likelihood.level_log_probs(self.params(x))

    # ------------------------------------------------------------ the contract
    def bound(self, x: Tensor, *, estimator: str | None = None, samples: int | None = None,
              generator: torch.Generator | None = None) -> Bound:
        """-log P(x) per example [B] nats, exactly (term nll: the sum of the D conditionals)."""
        if estimator not in (None, "exact"):
            raise UserError(f"The autoregressive family has one estimator, 'exact', not {estimator!r}.")
        nll = -self.likelihood.log_prob(x, self.params(x))
        return Bound({"nll": nll}, "exact", exact=True, dims=self.dims)

    def steps(self, grid: Tensor) -> Iterator[tuple[int, int, int, Tensor]]:
        """Walk the dimensions in order: yields (c, i, j, out [B, P]), the parameters of
        P(x[c, i, j] | the dimensions before it) computed from `grid` [B, C, H, W] as it is when
        the step is taken.  The caller fills grid[:, c, i, j] before asking for the next one."""
        channels, _, width = self.image
        cache: dict = {}
        for t in range(self.image[1] * width):
            i, j = divmod(t, width)
            h = self.net.step(self._features(grid), t, cache)  # [B, F]
            for c in range(channels):
                yield c, i, j, self.head(h.unsqueeze(-1), grid[:, :, i, j].unsqueeze(-1))[:, :, c, 0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, progress: bool = False) -> Tensor:
        """n ancestral draws, one net step per pixel (key/value cached for the transformer) and one
        head call per channel: levels [n, *shape].  Runs in eval mode (dropout off)."""
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        try:
            grid = torch.zeros((n, *self.image), dtype=torch.long, device=self.device)
            bar = tqdm(total=self.dims, desc="autoregressive sample", disable=not progress, leave=False)
            for c, i, j, out in self.steps(grid):
                grid[:, c, i, j] = self.likelihood.sample(out, generator)
                bar.update(1)
            bar.close()
            return grid.reshape(n, *self.shape)
        finally:
            self.train(was_training)

    def param_groups(self) -> list[dict]:
        """Weight decay (config.weight_decay, when set) on weight matrices and kernels only; biases,
        norms, embeddings and position tables are not decayed."""
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2 and not _no_decay(n)]
        rest = [p for n, p in self.named_parameters() if not (p.dim() >= 2 and not _no_decay(n))]
        wd = self.config.weight_decay
        return [{"params": decay, **({"weight_decay": wd} if wd is not None else {})},
                {"params": rest, "weight_decay": 0.0}]


def _no_decay(name: str) -> bool:
    return "embed" in name or name.endswith(".pos") or "earlier" in name


def resolve_auto(c: AutoregressiveConfig, levels: int, shape: tuple[int, ...]) -> AutoregressiveConfig:
    """The config with "auto" choices made: pixelcnn for images (H > 1), a categorical for K <= 64."""
    _, height, _ = image_view(shape)
    arch = c.arch if c.arch != "auto" else ("pixelcnn" if height > 1 else "transformer")
    output = c.output if c.output != "auto" else (
        "categorical" if levels <= CATEGORICAL_MAX_LEVELS else "logistic-mixture")
    return dataclasses.replace(c, arch=arch, output=output)


# Small batches at a larger step: more updates per second of a CPU budget (on digits' validation split,
# batch 32 at lr 3e-3 reached 1.83 bits/dim in 45 s where batch 128 at 1e-3 was at 2.15).
@register("autoregressive", AutoregressiveConfig, "exact likelihood: gated PixelCNN or causal transformer, "
          "categorical or discretized logistic mixture per dimension",
          train_defaults={"batch_size": 32, "lr": 3e-3, "eval_every": 50, "patience": 12})
def build(config: AutoregressiveConfig, levels: int | None, shape: tuple[int, ...]) -> Autoregressive:
    return Autoregressive(config, levels, shape)
