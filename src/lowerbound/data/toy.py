"""`toy2d:<name>`: continuous 2-D data sets whose true density is known exactly.

The shapes follow FFJORD's toy data (Grathwohl et al. 2019, "FFJORD", github.com/rtqichen/ffjord,
lib/toy_data.py), with every point drawn i.i.d. from a stated density so that log p(x) is exact:

- 8gaussians:   equal mixture of N(mu_k, s^2 I), mu_k at radius 4/1.414 on the eight compass points,
                s = 0.5/1.414.  Entropy by Monte Carlo: 2.833 nats.
- checkerboard: uniform on the 8 black squares (side 2) of a 4x4 board on [-4, 4]^2.
                Entropy log 32 (exact).
- rings:        equal mixture of four circles of radii 0.75, 1.5, 2.25, 3, angle uniform, blurred by
                N(0, 0.08^2 I).  The blurred circle has the closed form (Rice distribution)
                p(x) = exp(-(r^2 + R^2) / 2s^2) I0(r R / s^2) / (2 pi s^2), with I0 the modified Bessel
                function.  (FFJORD spaces angles evenly and fills rings in equal quotas; here they are
                i.i.d., which is what makes the density exact.)
- moons:        scikit-learn's two moons as FFJORD scales them: a moon chosen with probability 1/2,
                t ~ U(0, pi) on its half circle, blurred by N(0, 0.1^2 I), then x -> 2x + (-1, -0.2)
                (noise s = 0.2 after scaling).  p(x) is the blur integrated over t by 256-point
                Gauss-Legendre quadrature (relative error below 1e-10 at this noise level).

Splits: n_train / n_test points drawn with torch.Generator seeds 2*seed (train) and 2*seed + 1
(test), stored as float32 [N, 2]; the truth works in float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._config import from_dict
from ..errors import UserError
from .base import Dataset, register
from .truth import Truth, isotropic_mixture


def eight_gaussians() -> Truth:
    s = 1.0 / math.sqrt(2.0)
    unit = [(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)]
    means = torch.tensor(unit, dtype=torch.float64) * (4.0 / 1.414)
    return isotropic_mixture("8gaussians", means, 0.5 / 1.414)


class Checkerboard(Truth):
    """Uniform on the squares [2i, 2i+2) x [2j, 2j+2), i, j in -2..1 with i + j even (closed)."""

    name = "checkerboard"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        # FFJORD's recipe: a column uniformly, then one of its two black squares uniformly.
        u1 = torch.rand(n, generator=generator, dtype=torch.float64) * 4 - 2
        u2 = (torch.rand(n, generator=generator, dtype=torch.float64)
              - torch.randint(0, 2, (n,), generator=generator).double() * 2)
        u2 = u2 + torch.floor(u1) % 2
        return torch.stack([u1, u2], 1) * 2

    def _log_prob(self, x: Tensor) -> Tensor:
        u = x / 2
        cell = torch.floor(u)
        # a point on an edge belongs to both neighbouring cells: the closed squares, so float32
        # rounding of a point drawn just inside a square never moves it off the support
        left = cell - (u == cell).double()
        inside = torch.zeros(len(x), dtype=torch.bool)
        for i in (cell[:, 0], left[:, 0]):
            for j in (cell[:, 1], left[:, 1]):
                ok = (i >= -2) & (i <= 1) & (j >= -2) & (j <= 1) & ((i + j) % 2 == 0)
                inside |= ok
        out = torch.full((len(x),), -math.log(32.0), dtype=torch.float64)
        return out.masked_fill(~inside, -math.inf)

    def exact_entropy(self) -> float:
        return math.log(32.0)


class Rings(Truth):
    """Equal mixture of circles of radii `radii`, each blurred by isotropic Gaussian noise `std`."""

    name = "rings"

    def __init__(self, radii=(0.75, 1.5, 2.25, 3.0), std: float = 0.08) -> None:
        self.radii = torch.tensor(radii, dtype=torch.float64)
        self.std = float(std)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        ring = torch.randint(0, len(self.radii), (n,), generator=generator)
        angle = torch.rand(n, generator=generator, dtype=torch.float64) * (2 * math.pi)
        centre = self.radii[ring, None] * torch.stack([angle.cos(), angle.sin()], 1)
        return centre + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def _log_prob(self, x: Tensor) -> Tensor:
        r = x.norm(dim=1, keepdim=True)  # [B, 1]
        s2 = self.std**2
        z = r * self.radii / s2  # [B, R]
        # log I0(z) = log i0e(z) + z, so exp(-(r^2 + R^2)/2s^2) I0(rR/s^2) = exp(-(r - R)^2/2s^2) i0e
        per_ring = torch.log(torch.special.i0e(z)) - (r - self.radii) ** 2 / (2 * s2)
        log_norm = -math.log(2 * math.pi * s2) - math.log(len(self.radii))
        return torch.logsumexp(per_ring, dim=1) + log_norm


class Moons(Truth):
    """Two half circles (scikit-learn's make_moons), blurred, scaled by 2 and shifted as FFJORD does."""

    name = "moons"
    chunk = 2**13  # each point meets 2 x 256 quadrature nodes
    mc_samples = 2**17

    def __init__(self, noise: float = 0.1, nodes: int = 256) -> None:
        self.std = 2.0 * noise  # the blur after FFJORD's scaling by 2
        xi, w = np.polynomial.legendre.leggauss(nodes)
        self.t = torch.tensor((xi + 1) * math.pi / 2, dtype=torch.float64)  # nodes on [0, pi]
        # (1/pi) int_0^pi f dt = (1/2) sum_i w_i f(t_i)
        self.log_w = torch.log(torch.tensor(w, dtype=torch.float64) / 2)
        self.curve = torch.stack([self._centre(m, self.t) for m in (0, 1)])  # [2, nodes, 2]

    @staticmethod
    def _centre(moon: int, t: Tensor) -> Tensor:
        if moon == 0:
            c = torch.stack([t.cos(), t.sin()], -1)
        else:
            c = torch.stack([1 - t.cos(), 0.5 - t.sin()], -1)
        return 2 * c + torch.tensor([-1.0, -0.2], dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        moon = torch.randint(0, 2, (n,), generator=generator)
        t = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
        centre = torch.where(moon[:, None] == 0, self._centre(0, t), self._centre(1, t))
        return centre + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def _log_prob(self, x: Tensor) -> Tensor:
        s2 = self.std**2
        c = self.curve.reshape(-1, 2)  # [2 * nodes, 2]
        d2 = (x**2).sum(1, keepdim=True) - 2 * x @ c.T + (c**2).sum(1)  # [B, 2 * nodes]
        log_kernel = -d2.clamp(min=0) / (2 * s2) - math.log(2 * math.pi * s2)
        return torch.logsumexp(log_kernel + self.log_w.repeat(2), dim=1) - math.log(2.0)


_SHAPES = {"8gaussians": eight_gaussians, "checkerboard": Checkerboard, "rings": Rings, "moons": Moons}


@functools.lru_cache(maxsize=None)
def toy_truth(name: str) -> Truth:
    """The (immutable, cached) true density of toy2d:<name>; its entropy is computed once."""
    if name not in _SHAPES:
        raise UserError(f"Unknown toy2d set {name!r}; choose one of: {', '.join(_SHAPES)}.")
    return _SHAPES[name]()


@dataclass
class Toy2dOptions:
    n_train: int = 20000
    n_test: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_test < 1:
            raise UserError(f"toy2d sizes must be positive, got n_train={self.n_train}, "
                            f"n_test={self.n_test}.")


def sample_splits(truth: Truth, n_train: int, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """Train and test draws from seeds 2*seed and 2*seed + 1, as default-dtype floats."""
    dtype = torch.get_default_dtype()
    train = truth.sample(n_train, torch.Generator().manual_seed(2 * seed)).to(dtype)
    test = truth.sample(n_test, torch.Generator().manual_seed(2 * seed + 1)).to(dtype)
    return train, test


@register("toy2d", "2-D sets with a known density: toy2d:<8gaussians|checkerboard|rings|moons>, "
                   "continuous, 20000 train / 5000 test (options n_train, n_test, seed)")
def load_toy2d(arg: str | None = None, **options) -> Dataset:
    if arg is None:
        raise UserError(f"Name a toy2d set, e.g. toy2d:8gaussians; choose one of: {', '.join(_SHAPES)}.")
    truth = toy_truth(arg)
    opts = from_dict(Toy2dOptions, options, where="toy2d")
    train, test = sample_splits(truth, opts.n_train, opts.n_test, opts.seed)
    return Dataset(f"toy2d:{arg}", train, test, levels=None, shape=(2,), truth=truth,
                   info={"source": f"FFJORD toy data ({arg}), drawn i.i.d. from its exact density",
                         "split": f"train seed {2 * opts.seed}, test seed {2 * opts.seed + 1} "
                                  "(torch.Generator)"})
