"""`TrainState`: the one object that holds everything a resumed run needs (style.md habit 9).

model weights, EMA shadow, optimizer moments, grad scaler, step, examples seen, elapsed time, and
the early-stopping record (best validation bound, its step, evaluations since).  The learning-rate
schedule is a pure function of the step (TrainConfig.lr_at) and all randomness is derived from
(seed, rank, step), so nothing else is needed for a bitwise-identical continuation.  Its
state_dict holds tensors and plain values only, loadable with torch.load(weights_only=True).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .ema import EMA

FORMAT = 1


class TrainState:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA | None,
                 scaler: torch.amp.GradScaler | None = None):
        self.model = model
        self.optimizer = optimizer
        self.ema = ema
        self.scaler = scaler
        self.step = 0
        self.examples = 0
        self.elapsed = 0.0  # seconds of training (excluding evaluation), summed over sessions
        self.best_value = math.inf
        self.best_step = -1
        self.evals_since_best = 0
        self.stopped_early = False

    def record_validation(self, value: float) -> bool:
        """Note a validation bound (lower is better); True when it is the best so far."""
        if value < self.best_value:
            self.best_value, self.best_step, self.evals_since_best = value, self.step, 0
            return True
        self.evals_since_best += 1
        return False

    def averaged_weights(self) -> dict[str, torch.Tensor]:
        """The weights to evaluate and export: the EMA's when there is one, else the model's."""
        if self.ema is None:
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return self.ema.state_dict_for(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "step": self.step,
            "examples": self.examples,
            "elapsed": self.elapsed,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "stopped_early": self.stopped_early,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != FORMAT:
            raise ValueError(f"unknown training-state format {state.get('format')!r}")
        self.model.load_state_dict(state["model"])
        kinds = [(g.get("fused"), g.get("foreach")) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        _keep_implementation(self.optimizer, kinds)
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.examples = int(state["examples"])
        self.elapsed = float(state["elapsed"])
        self.best_value = float(state["best_value"])
        self.best_step = int(state["best_step"])
        self.evals_since_best = int(state["evals_since_best"])
        self.stopped_early = bool(state["stopped_early"])


def _keep_implementation(optimizer: torch.optim.Optimizer, kinds: list[tuple]) -> None:
    """Loading an optimizer's state also loads the fused/foreach choice of the run that saved it;
    keep this run's (fused_adamw, or a machine without the fused kernel), and put each step count
    where that implementation wants it: the fused kernel on the parameter's device, the others on
    the CPU."""
    for group, (fused, foreach) in zip(optimizer.param_groups, kinds):
        group["fused"], group["foreach"] = fused, foreach
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if torch.is_tensor(st.get("step")) and not group.get("capturable"):
                st["step"] = st["step"].to(p.device if fused else "cpu", torch.float32)
