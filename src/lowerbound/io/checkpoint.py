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

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

POINTER = "latest"
PREFIX = "step-"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, writer) -> None:
    """Call writer(file_object) on a temporary file beside `path`, fsync it, then rename it over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def save(folder: Path, state: dict[str, Any], *, name: str | None = None, keep: int = 3,
         move_latest: bool = True) -> Path:
    """Write `state` (tensors and plain values only) as folder/NAME, then point `latest` at it.

    name defaults to step-XXXXXXXX.pt from state["step"].  Returns the checkpoint's path.
    """
    folder = Path(folder)
    name = name or f"{PREFIX}{int(state['step']):08d}.pt"
    path = folder / name
    atomic_write_bytes(path, lambda f: torch.save(state, f))
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
    name = pointer.read_text().strip()
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"The checkpoint pointer {pointer} is not a checkpoint name ({name!r}).")
    return Path(folder) / name


def load(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; any failure is one UserError sentence."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling refused, truncated zip, bad magic number, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            reason = "it holds Python objects that would run code when loaded, which is refused"
        raise UserError(f"The checkpoint {path} cannot be loaded safely: {reason[:200]}.") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UserError(f"The file {path} is not a lowerbound training checkpoint.")
    return state


def load_latest(folder: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load the checkpoint `latest` points at in folder."""
    path = latest_path(folder)
    if path is None:
        raise UserError(f"The folder {folder} holds no checkpoint (no `{POINTER}` pointer).")
    return load(path, map_location)
