"""Fetching a data set's official files: streamed to a temporary file, hash-checked, then renamed.

Nothing here runs unless a user asks for `download=True`; the tests point it at file:// URLs.
A file whose MD5 (the checksum the data sets publish) does not match is deleted and refused, and
nothing is ever left half written under its final name: the bytes go to a temporary file in the
same folder and `os.replace` moves it into place only after the hash matches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from ..errors import UserError

CHUNK = 1 << 20


def _temp_beside(dest: Path) -> tuple[int, Path]:
    """An open (fd, path) for a new file beside dest, with the umask's usual mode (not 0600)."""
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.part"
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


def md5_of(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(urls: list[str], dest: Path, md5: str, progress: bool = True) -> Path:
    """Download the first URL that works to `dest`, checking its MD5; returns dest.

    A file already at `dest` with the right hash is kept; one with a wrong hash is replaced.
    """
    if dest.is_file() and md5_of(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            got = _stream(url, dest, progress)
        except (urllib.error.URLError, OSError) as e:
            failures.append(f"{url} ({getattr(e, 'reason', e)})")
            continue
        actual = md5_of(got)
        if actual != md5:
            os.unlink(got)
            raise UserError(f"The file downloaded from {url} has MD5 {actual}, not the published "
                            f"{md5}; it was deleted and nothing was written to {dest}.")
        os.replace(got, dest)
        return dest
    raise UserError(f"Could not download {dest.name}: {'; '.join(failures)}.")


def _stream(url: str, dest: Path, progress: bool) -> Path:
    """Write the URL's bytes to a temporary file beside dest; returns its path."""
    from tqdm import tqdm

    fd, tmp = _temp_beside(dest)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr,
                      disable=not progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def extract_members(archive: Path, members: dict[str, Path]) -> None:
    """Extract the named regular files of a tar archive to the given paths, atomically each.

    Only the listed names are read; links, devices and every other member are ignored, so a
    crafted archive cannot write outside the target paths.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for name, target in members.items():
                try:
                    info = tar.getmember(name)
                except KeyError:
                    raise UserError(f"{archive} has no member {name}.") from None
                if not info.isfile():
                    raise UserError(f"{archive} member {name} is not a regular file.")
                source = tar.extractfile(info)
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = _temp_beside(target)
                try:
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    os.replace(tmp, target)
                except BaseException:
                    os.unlink(tmp)
                    raise
    except (tarfile.TarError, EOFError) as e:
        raise UserError(f"{archive} is not a readable tar archive ({e}).") from None
