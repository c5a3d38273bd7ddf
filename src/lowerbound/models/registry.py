"""Families by name (style.md habit 5: extend by registration, not by an if-chain).

A family module registers itself on import with `@register(name, ConfigClass)` on a builder
`build(config, levels, shape) -> GenerativeModel`.  `get(name)` imports the module lazily from
`_MODULES`, so `lowerbound train NAME` never pays for families it does not use.  Before a model is
allocated, it is built once on torch's meta device (shapes only: no memory, no randomness) and a
model whose training state would not fit in this machine's memory is refused with one sentence.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .._config import from_dict
from ..errors import UserError
from .base import GenerativeModel

# family name -> module that registers it (imported on first use)
_MODULES: dict[str, str] = {
    "uniform": "lowerbound.models.baselines",
    "categorical": "lowerbound.models.baselines",
    "categorical-mixture": "lowerbound.models.baselines",
    "gaussian": "lowerbound.models.baselines",
    "gaussian-mixture": "lowerbound.models.baselines",
    "independent": "lowerbound.models.independent",
    "diffusion": "lowerbound.models.diffusion.ddpm",
    "vdm": "lowerbound.models.diffusion.vdm",
    "vae": "lowerbound.models.vae",
    "autoregressive": "lowerbound.models.autoregressive",
    "flow": "lowerbound.models.flow",
    "gan": "lowerbound.models.gan",
}


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    build: Callable[[Any, int | None, tuple[int, ...]], GenerativeModel]
    summary: str = ""
    # loop options this family trains best with (e.g. a smaller batch), under the user's own options
    train_defaults: dict[str, Any] = field(default_factory=dict)


_FAMILIES: dict[str, Family] = {}


def register(name: str, config_cls: type, summary: str = "", train_defaults: dict[str, Any] | None = None):
    """Decorator: register `build(config, levels, shape)` as family `name` configured by config_cls.
    train_defaults: loop options (TrainConfig keys, e.g. {"batch_size": 32}) that replace the loop's
    defaults for this family; a config file, flags and --set still override them."""

    def deco(build):
        _FAMILIES[name] = Family(name, config_cls, build, summary, dict(train_defaults or {}))
        return build

    return deco


def names() -> list[str]:
    """Every family name that can be asked for."""
    return sorted(set(_MODULES) | set(_FAMILIES))


def get(name: str) -> Family:
    if name not in _FAMILIES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _FAMILIES:
        raise UserError(f"Unknown model family {name!r}; choose one of: {', '.join(names())}.")
    return _FAMILIES[name]


def build(name: str, options: dict[str, Any] | None, levels: int | None, shape: tuple[int, ...]):
    """Build family `name` from a plain dict of options (unknown keys refused by name)."""
    family = get(name)
    config = from_dict(family.config_cls, options or {}, where=name)
    check_size(family, config, levels, tuple(shape))
    return family.build(config, levels, tuple(shape))


TRAINING_COPIES = 5  # weights, gradients, Adam's two moments, the EMA average


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_size(family: Family, config: Any, levels: int | None, shape: tuple[int, ...]) -> None:
    """Refuse a model whose training state (TRAINING_COPIES of its float32 tensors) exceeds the
    machine's memory, sized on the meta device before anything is allocated."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            meta = family.build(config, levels, shape)
        numel = sum(t.numel() for t in [*meta.parameters(), *meta.buffers()])
    except Exception:  # a builder that computes values cannot be sized this way: build it for real
        return
    need, have = TRAINING_COPIES * 4 * numel, _memory_bytes()
    if have and need > have:
        raise UserError(f"The {family.name} model for this data ({levels} levels, shape {tuple(shape)}) "
                        f"would have {numel:.3g} numbers, about {need / 2**30:.0f} GiB to train, more than "
                        f"this machine's {have / 2**30:.0f} GiB; use fewer levels or smaller model options.")
