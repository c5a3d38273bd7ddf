"""Exponential moving average of the parameters, kept in fp32 (Polyak averaging).

shadow <- d shadow + (1 - d) theta after every optimizer step, with the warm-up of TensorFlow's
ExponentialMovingAverage(num_updates): d = min(decay, (1 + n) / (10 + n)), so the average is not
dominated by the random initialisation in short runs such as digits, where the best validation
bound comes after a few hundred steps.  decay = 0 means no averaging (the shadow is the model).
Buffers (e.g. normalisation statistics) are copied, not averaged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class EMA:
    """Holds fp32 copies of a model's floating-point parameters, by name."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self._bound_to: nn.Module | None = None
        self.shadow: dict[str, Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters()
            if p.is_floating_point()
        }

    def rate(self) -> float:
        """The weight d given to the old average at the next update."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.rate()
        if self._bound_to is not model:  # cache the pairs: parameters are stable
            params = dict(model.named_parameters())
            self._pairs = ([self.shadow[n] for n in self.shadow], [params[n] for n in self.shadow])
            self._fp32 = all(p.dtype == torch.float32 for p in self._pairs[1])
            self._bound_to = model
        shadows, params = self._pairs
        current = params if self._fp32 else [p.detach().float() for p in params]
        torch._foreach_lerp_(shadows, current, 1.0 - d)
        self.num_updates += 1

    def state_dict_for(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state dict with the averaged parameters in place of the trained ones."""
        out = {}
        for name, value in model.state_dict().items():
            out[name] = self.shadow[name].to(value.dtype) if name in self.shadow else value.detach().clone()
        return out

    @torch.no_grad()
    def copy_to(self, model: nn.Module, source: nn.Module | None = None) -> None:
        """Load the averaged weights into `model` (buffers from `source`, the trained model)."""
        state = self.state_dict_for(source if source is not None else model)
        model.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: {sorted(missing)[:3]}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
