"""model.safetensors: exported weights with the resolved config in the file's metadata.

safetensors holds only tensors and a string-to-string metadata table, so loading an export never
runs code.  The metadata key "lowerbound" holds a JSON object: schema, family, levels, shape, the
model's resolved options, and where the weights came from (e.g. "ema, best validation, step 300").
Building the model back from it is the train room's job (`lowerbound.load`); this module only reads
and writes the file and refuses one that is not ours with a sentence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .files import atomic_write_bytes

KEY = "lowerbound"
SCHEMA = 1


def save(path: Path, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    """Write tensors (a state dict) and info (plain JSON values) atomically to path."""
    from safetensors.torch import save

    # safetensors refuses shared storage and non-contiguous tensors: store private contiguous copies
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {KEY: json.dumps({"schema": SCHEMA, **info}, sort_keys=True)}
    blob = save(plain, metadata=meta)
    atomic_write_bytes(Path(path), blob)


def load(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, info) of an export; a file that is not a lowerbound export is one UserError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"The export {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise UserError(f"The file {path} is not a readable safetensors export ({_first_line(e)}).") from None
    if KEY not in meta:
        raise UserError(f"The file {path} is a safetensors file but not a lowerbound export "
                        f"(its metadata has no {KEY!r} entry).")
    try:
        info = json.loads(meta[KEY])
    except json.JSONDecodeError:
        raise UserError(f"The export {path} has unreadable lowerbound metadata.") from None
    if not isinstance(info, dict) or info.get("schema") != SCHEMA or "family" not in info:
        raise UserError(f"The export {path} was written by an unknown version of lowerbound "
                        f"(schema {info.get('schema') if isinstance(info, dict) else None}).")
    return tensors, info


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
