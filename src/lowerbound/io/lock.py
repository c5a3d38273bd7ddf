"""One writer per run directory: an advisory lock held for the run's whole life.

Two trainings started at once in the same --run-dir would both append to metrics.csv and overwrite
each other's config and checkpoints, so whoever writes into a run directory first takes its lock:
an operating-system file lock (`filelock`, flock(2) on POSIX) on DIR/.lowerbound.lock.  The kernel
drops it when its process ends, however it ends (SIGKILL included), so a lock can never be left
held by a dead process.  Beside it, DIR/.lowerbound.owner names the holder (pid, host, command,
start time); a second writer is refused with one sentence naming that pid, and a writer that takes
a lock whose owner file survived a crash says which process it took it over from.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from .files import atomic_write_text, os_error_sentence

LOCK = ".lowerbound.lock"
OWNER = ".lowerbound.owner"
NAMES = (LOCK, OWNER)  # files of the lock itself, which do not make a run directory "not empty"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_owner(folder: Path) -> dict[str, Any]:
    """The owner record of a run directory's lock ({} when absent or unreadable)."""
    try:
        owner = json.loads((Path(folder) / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


class RunLock:
    """The lock of one run directory.  `acquire()` takes it without waiting or raises a UserError
    naming the holder; `release()` (or the end of the process) gives it back."""

    def __init__(self, folder: Path, what: str = "train"):
        self.folder = Path(folder)
        self.what = what
        self.taken_over: dict[str, Any] = {}  # the owner record of a crashed holder, if any
        self._lock = None

    def _take(self):
        """The flock itself (a filelock.FileLock, held), or a UserError naming the holder."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.folder / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(self._busy_sentence()) from None
        except OSError as e:
            raise UserError(os_error_sentence(e, self.folder / LOCK, "lock the run directory")) from None
        return lock

    def acquire(self) -> RunLock:
        self._lock = self._take()
        previous = read_owner(self.folder)
        if previous.get("pid") not in (None, os.getpid()):
            self.taken_over = previous
        record = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                  "command": " ".join(sys.argv[:8])[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            atomic_write_text(self.folder / OWNER, json.dumps(record) + "\n")
        except UserError:
            self.release()
            raise
        return self

    def busy(self) -> str | None:
        """The refusal sentence when another process holds this lock now, else None; writes nothing
        (where nobody has locked the folder yet, no owner record exists and nothing is probed)."""
        if read_owner(self.folder).get("pid") in (None, os.getpid()):
            return None
        try:
            self._take().release()
        except UserError as e:
            return str(e)
        return None

    def _busy_sentence(self) -> str:
        owner = read_owner(self.folder)
        pid = owner.get("pid", "unknown")
        where = f" on {owner['host']}" if owner.get("host") not in (None, socket.gethostname()) else ""
        since = f" since {owner['since']}" if owner.get("since") else ""
        return (f"The run directory {self.folder} is in use by process {pid}{where} "
                f"({owner.get('what', 'a lowerbound command')}{since}); wait for it to end or stop it, "
                f"or choose another --run-dir.")

    def takeover_note(self) -> str | None:
        """A sentence when the lock was taken over from a process that ended without releasing it."""
        pid = self.taken_over.get("pid")
        if pid is None:
            return None
        state = "is no longer running" if not _alive(int(pid)) else "no longer holds it"
        what = self.taken_over.get("what", "?")
        return f"took over the lock of {self.folder} from process {pid} ({what}), which {state}."

    def release(self) -> None:
        if self._lock is None:
            return
        if read_owner(self.folder).get("pid") == os.getpid():
            try:
                (self.folder / OWNER).unlink()
            except OSError:
                pass
        self._lock.release()
        self._lock = None

    def __enter__(self) -> RunLock:
        return self if self._lock is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
