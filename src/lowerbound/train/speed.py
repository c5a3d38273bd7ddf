"""The training loop's speed options (TrainConfig: fused_adamw, compile; issue 16), which change how
a step is computed, never what beyond float rounding.

- AdamW with torch's fused kernel (one kernel for the whole update, `torch.optim.AdamW(fused=True)`)
  where this torch and device have it, found by trying (runtime.fused_adamw); else the foreach
  implementation (one multi-tensor kernel per operation).
- torch.compile of the model's net (TorchDynamo and Inductor, Ansel et al. 2024, "PyTorch 2"): the
  net's forward becomes an instance attribute, so its parameters, state_dict and checkpoints keep
  their names, and deleting the attribute gives the eager forward back.  A missing C++ compiler
  shows only when the compiled net first runs; the loop then goes back to eager (loop.Trainer).

benchmarks/train_step_knobs.py measures each option as an examples/s ratio.
"""

from __future__ import annotations

import torch
from torch import nn

from . import runtime
from .config import TrainConfig


def make_adamw(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the parameter groups: torch's fused kernel when cfg.fused_adamw and this torch
    and device have it, else the foreach implementation."""
    impl = {"fused": True} if cfg.fused_adamw and runtime.fused_adamw(device.type) else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)


def compile_net(model: nn.Module, phases: bool) -> tuple[bool, str | None]:
    """torch.compile model.net's forward in place: (compiled?, a one-line warning when not).
    Models with several phases (a GAN) or without a `net` stay eager."""
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Module) or phases:
        return False, "compile: this model has no single net to compile; training eagerly."
    try:
        net.forward = torch.compile(net.forward)
    except Exception as e:  # noqa: BLE001 - e.g. a Python version that dynamo does not support
        return False, f"compile: torch.compile failed ({first_line(e)}); training eagerly."
    return True, None


def uncompile_net(model: nn.Module) -> None:
    """The net's own forward again (the class's, once the instance attribute is gone)."""
    vars(model.net).pop("forward", None)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:160] if text else "") or type(e).__name__
