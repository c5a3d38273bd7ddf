"""Training-state checkpoints: written atomically, loaded without ever running code.

Writing: the state goes to a temporary file in the same folder, is flushed and fsync'ed, renamed
over its final name with os.replace (atomic on POSIX), the folder is fsync'ed, and only then is
the `latest` pointer (a one-line text file naming the checkpoint) moved the same way.  A crash at
any moment therefore leaves `latest` naming a complete file.  The last `keep` step checkpoints are
kept; named ones (e.g. `best.pt`) are never pruned.

Reading: `torch.load(weights_only=True)`, which unpickles only tensors and plain containers; any
refusal, truncation or corruption becomes one UserError sentence.  The step lives inside the
checkpoint, never parsed out of a file name.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .files import atomic_write_bytes, atomic_write_text

__all__ = ["POINTER", "PREFIX", "atomic_write_bytes", "atomic_write_text", "latest_path", "load",
           "load_latest", "load_newest", "prune", "save"]

POINTER = "latest"
PREFIX = "step-"


def save(folder: Path, state: dict[str, Any], *, name: str | None = None, keep: int = 3,
         move_latest: bool = True) -> Path:
    """Write `state` (tensors and plain values only) as folder/NAME, then point `latest` at it.

    name defaults to step-XXXXXXXX.pt from state["step"].  Returns the checkpoint's path.
    """
    folder = Path(folder)
    name = name or f"{PREFIX}{int(state['step']):08d}.pt"
    path = folder / name
    buffer = io.BytesIO()  # serialized first: a failed write is then a plain OSError, not torch's
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    if move_latest:
        atomic_write_text(folder / POINTER, name + "\n")
        prune(folder, keep)
    return path


def prune(folder: Path, keep: int) -> None:
    """Delete the oldest step checkpoints beyond the last `keep`; never the one `latest` names."""
    folder = Path(folder)
    current = latest_path(folder)
    steps = sorted(folder.glob(f"{PREFIX}*.pt"), key=lambda p: p.stat().st_mtime_ns)
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        if current is None or old.name != current.name:
            old.unlink(missing_ok=True)


def latest_path(folder: Path) -> Path | None:
    """The checkpoint `latest` names, or None when the folder holds no pointer yet."""
    pointer = Path(folder) / POINTER
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UserError(f"The checkpoint pointer {pointer} holds binary bytes, not a checkpoint "
                        "name.") from None
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}", name):
        raise UserError(f"The checkpoint pointer {pointer} is not a checkpoint name ({name[:80]!r}).")
    return Path(folder) / name


def load(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; any failure is one UserError sentence."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling refused, truncated zip, bad magic number, ...
        text = str(e)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise UserError(f"The checkpoint {path} cannot be loaded safely: it holds Python objects that "
                            "would run code when loaded, which is refused.") from None
        raise UserError(f"The checkpoint {path} cannot be loaded: it is truncated or corrupt.") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UserError(f"The file {path} is not a lowerbound training checkpoint.")
    return state


def load_newest(folder: Path, map_location: Any = "cpu") -> tuple[dict[str, Any], Path, str | None] | None:
    """(state, path, note) of the newest checkpoint in folder that loads, or None when the folder holds
    no checkpoint at all.  The one `latest` names comes first; when it (or the pointer) is broken, the
    step checkpoint with the highest step that loads is used and `note` says which file was skipped and
    which one was used.  Nothing loads: one UserError sentence naming the broken file."""
    folder = Path(folder)
    problems: list[str] = []
    try:
        named = latest_path(folder)
    except UserError as e:
        named, problems = None, [str(e)]
    if named is not None:
        try:
            return load(named, map_location), named, None
        except UserError as e:
            problems.append(str(e))
    loaded = []
    for path in sorted(folder.glob(f"{PREFIX}*.pt")) if folder.is_dir() else []:
        if path != named:
            try:
                loaded.append((load(path, map_location), path))
            except UserError as e:
                problems.append(str(e))
    if not loaded:
        if problems:
            raise UserError(f"{problems[0][:-1]}, and no other checkpoint in {folder} loads.")
        return None
    state, path = max(loaded, key=lambda sp: sp[0]["step"])
    note = (f"{problems[0][:-1]}; using {path.name} (step {state['step']}), the newest checkpoint that "
            f"loads, instead." if problems else None)
    return state, path, note


def load_latest(folder: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load the newest checkpoint of folder (the one `latest` points at, unless it is broken)."""
    found = load_newest(folder, map_location)
    if found is None:
        raise UserError(f"The folder {folder} holds no checkpoint (no `{POINTER}` pointer).")
    return found[0]
