"""`Dataset`: train and test tensors plus the layout every model is built for (design.md).

Discrete data are integer levels 0..K-1 (long tensors, `levels = K`); continuous data are float
tensors with `levels = None`.  Data sets whose true density is known carry it in `truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from ..errors import UserError

# more levels than 16-bit data have: such data are continuous for every purpose (and a categorical
# decoder over them would not fit in memory)
MAX_LEVELS = 2**16


class KnownDensity(Protocol):
    """The true density of a synthetic data set: exact log p(x) and its entropy."""

    def log_prob(self, x: Tensor) -> Tensor:  # [B, *shape] -> [B] nats
        ...

    def entropy(self) -> Any:  # an Estimate in nats (exact or Monte Carlo with its stderr)
        ...


@dataclass
class Dataset:
    """train/test: [N, *shape]; levels: K for discrete data, None for continuous."""

    name: str
    train: Tensor
    test: Tensor
    levels: int | None
    shape: tuple[int, ...]
    truth: KnownDensity | None = None
    info: dict[str, Any] = field(default_factory=dict)  # source, split rule, citation
    # epoch -> a fresh train split, for data redrawn every epoch (dynamically binarized MNIST);
    # None when the train split is fixed.  `train` is then the draw for epoch 0.
    resample: Callable[[int], Tensor] | None = field(default=None, repr=False)
    # class labels [N] (long) of train and test where the data set has them (digits), else None;
    # the eval room's feature net is a classifier trained on them
    train_labels: Tensor | None = field(default=None, repr=False)
    test_labels: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.levels is not None and not 2 <= self.levels <= MAX_LEVELS:
            raise UserError(f"The data set {self.name} has {self.levels} levels; discrete data need "
                            f"2 to {MAX_LEVELS} levels (omit levels for continuous data).")
        for split, t, y in (("train", self.train, self.train_labels), ("test", self.test, self.test_labels)):
            if y is not None and tuple(y.shape) != (len(t),):
                raise UserError(f"The {split} labels of {self.name} have shape {tuple(y.shape)}, "
                                f"expected ({len(t)},).")
            if tuple(t.shape[1:]) != tuple(self.shape):
                raise UserError(f"The {split} split of {self.name} has shape {tuple(t.shape[1:])}, "
                                f"expected {tuple(self.shape)}.")
            if self.levels is not None:
                if t.is_floating_point() or t.is_complex():
                    raise UserError(f"The {split} split of {self.name} holds {t.dtype} values; "
                                    f"discrete data are integer levels 0..{self.levels - 1}.")
                if t.numel() and (t.min() < 0 or t.max() > self.levels - 1):
                    raise UserError(f"The {split} split of {self.name} holds values outside "
                                    f"0..{self.levels - 1}.")
            elif not t.is_floating_point() or not torch.isfinite(t).all():
                raise UserError(f"The {split} split of {self.name} must hold finite floats, since "
                                "it has no levels.")

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    @property
    def discrete(self) -> bool:
        return self.levels is not None

    def split(self, name: str) -> Tensor:
        if name not in ("train", "test"):
            raise UserError(f"Unknown split {name!r}; choose train or test.")
        return self.train if name == "train" else self.test

    def train_for_epoch(self, epoch: int) -> Tensor:
        """The train split to use in `epoch`: redrawn per epoch when the data set says so."""
        return self.train if self.resample is None else self.resample(epoch)

    def describe(self) -> str:
        kind = f"{self.levels} levels" if self.levels else "continuous"
        lines = [f"{self.name}: {len(self.train)} train, {len(self.test)} test, shape "
                 f"{tuple(self.shape)} (D = {self.dims}), {kind}"]
        lines += [f"  {k}: {v}" for k, v in self.info.items()]
        if self.truth is not None:
            lines.append(f"  true density known; entropy {self.truth.entropy()!r} nats")
        return "\n".join(lines)


# name (or prefix before ':') -> loader(arg_after_colon, **options) -> Dataset
_LOADERS: dict[str, Callable[..., Dataset]] = {}
_SUMMARIES: dict[str, str] = {}


def register(name: str, summary: str = ""):
    """Decorator registering a loader `fn(arg: str | None, **options) -> Dataset` under `name`."""

    def deco(fn):
        _LOADERS[name] = fn
        _SUMMARIES[name] = summary
        return fn

    return deco


def available() -> dict[str, str]:
    """Registered data set names with one-line summaries."""
    _import_builtin()
    return dict(_SUMMARIES)


def load(name: str, **options: Any) -> Dataset:
    """Load a data set by name, e.g. "digits", "toy2d:8gaussians", "mixture:5", "mnist"."""
    _import_builtin()
    key, _, arg = name.partition(":")
    if key not in _LOADERS:
        raise UserError(f"Unknown data set {name!r}; choose one of: {', '.join(sorted(_LOADERS))}.")
    return _LOADERS[key](arg or None, **options)


def _import_builtin() -> None:
    import importlib

    for mod in ("digits", "toy", "mixture", "files", "user"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:  # a module not written yet
            if e.name != f"{__package__}.{mod}":
                raise
