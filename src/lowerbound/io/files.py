"""Writing files so that a failure loses nothing and says one sentence.

Every file of a run directory is written atomically: the bytes go to a temporary file beside the
target (`.NAME.PID.RANDOM.tmp`), are flushed and fsync'ed, and the temporary is renamed over the
target with os.replace (atomic on POSIX), then the folder is fsync'ed.  A crash at any moment leaves
either the old file or the new one, never half of one.  When the write fails (a full disk, a
file-size limit, no permission) the temporary is removed and the failure becomes a `WriteError`, a
UserError whose one sentence names the file and the cause.  A process killed mid-write (SIGKILL)
can still leave a temporary behind: `remove_temporaries` clears them when the run is reopened.

Files are created with mode 0666 less the umask (like any program's files; tempfile.mkstemp's 0600
would survive the rename and keep other users and tools from reading a run).
"""

from __future__ import annotations

import errno
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would exceed this system's file-size limit",
    errno.EACCES: "permission is denied",
    errno.EPERM: "the operation is not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
}


class WriteError(UserError):
    """A file could not be written; nothing partial was left behind.  .path: the target file."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = Path(path)


def os_error_sentence(e: OSError, path: Path, doing: str = "write") -> str:
    """One sentence for an operating-system error while doing something to path."""
    cause = _CAUSES.get(e.errno) or e.strerror or str(e) or type(e).__name__
    return f"Could not {doing} {path}: {cause}."


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


def temporary_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed
    and an OSError becomes a WriteError sentence."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as e:  # a file stands where a folder of the path should be
            raise WriteError(os_error_sentence(OSError(errno.ENOTDIR, ""), path), path) from e
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteError(os_error_sentence(e, path), path) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to path atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries (.NAME.*.tmp) that interrupted writes left directly in folder; returns
    them.  Call it only while holding the folder's run lock, so no live writer's file is touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file():
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed
