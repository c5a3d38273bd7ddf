"""`lowerbound.load(path)`: a ready model from a run directory or a model.safetensors export.

Nothing loaded here runs code: exports are safetensors and training states load with
torch.load(weights_only=True).  The model is rebuilt from the family's registry with the resolved
options stored beside the weights, and weights that do not fit it (an export from another model)
are refused with one sentence.  From a run directory, `checkpoint="best"` (the default) gives the
exported best-validation EMA weights; `checkpoint="last"` gives the EMA weights of the latest
training state.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..io import checkpoint, export
from ..models import registry
from .rundir import BEST, EXPORT, read_config

Which = Literal["best", "last"]


def averaged_weights(state: dict[str, Any]) -> dict[str, Tensor]:
    """The weights to use from a training state: the EMA shadow over the model's state dict."""
    weights = dict(state["model"])
    ema = state.get("ema")
    if ema:
        for name, value in ema["shadow"].items():
            weights[name] = value.to(weights[name].dtype)
    return weights


def build(family: str, options: dict[str, Any], levels: int | None, shape) -> nn.Module:
    return registry.build(family, options, levels, tuple(shape))


def fill(model: nn.Module, weights: dict[str, Tensor], source: Path) -> nn.Module:
    """Load weights into model; a mismatch (another model's weights) is one UserError sentence."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or extra or wrong:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"shape of {wrong[:3]} differs")
        raise UserError(f"The weights in {source} do not fit a {getattr(model, 'family', '?')} model "
                        f"with these options ({what}); they come from another model.")
    model.load_state_dict(weights)
    return model


def load_with_info(path: str | Path, checkpoint_: Which = "best",
                   device: str | torch.device | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, info: family, data, data_options, levels, shape, model options, source,
    step); `lowerbound.data.load(info["data"], **info["data_options"])` gives the run's data."""
    path = Path(path)
    if checkpoint_ not in ("best", "last"):
        raise UserError(f"Unknown checkpoint {checkpoint_!r}; choose best or last.")
    if path.is_file() and path.suffix == ".safetensors":
        weights, info = export.load(path)
        source = path
    elif path.is_dir():
        weights, info, source = _from_run_dir(path, checkpoint_)
    elif path.exists():
        raise UserError(f"The path {path} is neither a run directory nor a .safetensors export.")
    else:
        raise UserError(f"The path {path} does not exist.")
    model = build(info["family"], info.get("model", {}), info.get("levels"), info["shape"])
    fill(model, weights, source)
    if device is not None:
        model = model.to(device)
    info = {**info, "source": str(source)}
    return model.eval(), info


def _from_run_dir(path: Path, which: Which) -> tuple[dict[str, Tensor], dict[str, Any], Path]:
    cfg = read_config(path)
    layout = cfg.get("layout") or {}
    info = {"family": cfg["family"], "data": cfg.get("data"), "data_options": cfg.get("data_options", {}),
            "model": cfg.get("model", {}),
            "levels": layout.get("levels"), "shape": layout.get("shape")}
    ckpts = path / "checkpoints"
    if which == "best" and (path / EXPORT).is_file():
        weights, meta = export.load(path / EXPORT)
        return weights, {**info, **meta}, path / EXPORT
    if which == "best" and (ckpts / BEST).is_file():
        state, source = checkpoint.load(ckpts / BEST), ckpts / BEST
    else:
        found = checkpoint.load_newest(ckpts)
        if found is None:
            raise UserError(f"The run directory {path} holds no weights yet (no export and no checkpoint).")
        state, source, note = found
        if note:  # the newest checkpoint is broken and an older one is used: the caller says so
            info["warning"] = note
    return averaged_weights(state), {**info, "step": int(state["step"])}, source


def load(path: str | Path, checkpoint: Which = "best", device: str | torch.device | None = None):
    """A ready model (eval mode) from a run directory or a .safetensors export."""
    model, info = load_with_info(path, checkpoint, device)
    if info.get("warning"):
        warnings.warn(info["warning"], stacklevel=2)
    return model
