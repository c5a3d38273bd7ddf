"""Readers for the file formats data come in, each refusing a broken file with one sentence.

- IDX (LeCun et al., MNIST; also Fashion-MNIST): a big-endian header `0 0 <type> <ndim>`, ndim
  uint32 sizes, then the values; gzipped or not.  See yann.lecun.com/exdb/mnist ("file formats").
- .npy / .npz arrays, read with allow_pickle=False so that no object is ever unpickled.
- PNG images, through pillow, as [C, H, W] uint8 (C = 1 for greyscale, 3 for colour).
- `as_levels`: turn an array into a long tensor of levels 0..K-1, or say what is wrong with it
  (non-finite, not integers, outside 0..K-1).

Every error is a UserError whose message names the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError

# IDX type byte -> big-endian numpy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its magic bytes, whatever its name)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file.")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise UserError(f"{path} is truncated: its gzip stream ends early.") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"{path} is not a valid gzip file ({e}).") from None


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """An IDX file (optionally .gz) as a numpy array; `ndim` checks the header (3 for images)."""
    data = read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path} is truncated: {len(data)} bytes, shorter than an IDX header.")
    magic = struct.unpack(">I", data[:4])[0]
    kind, dims_n = data[2], data[3]
    wanted = f"0x{(0x0800 | ndim):08x}" if ndim is not None else "0x000008NN"
    if data[0] != 0 or data[1] != 0 or kind not in IDX_TYPES or (ndim is not None and dims_n != ndim):
        raise UserError(f"{path} has the wrong magic number 0x{magic:08x} (expected {wanted}): "
                        "it is not an IDX file of the expected kind.")
    header = 4 + 4 * dims_n
    if len(data) < header:
        raise UserError(f"{path} is truncated: its header lists {dims_n} sizes but the file ends early.")
    shape = struct.unpack(f">{dims_n}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[kind])
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "is truncated" if found < expected else "has trailing bytes"
        raise UserError(f"{path} {what}: its header says {'x'.join(map(str, shape))} values "
                        f"({expected} bytes) but {found} bytes follow.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def as_levels(array: np.ndarray, levels: int, source: str) -> Tensor:
    """An array of integer levels 0..K-1 as a long tensor; anything else raises naming `source`."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise UserError(f"{source} holds non-finite values (NaN or infinity).")
        if not (array == np.round(array)).all():
            raise UserError(f"{source} holds fractional values; integer levels 0..{levels - 1} "
                            "are required.")
    elif array.dtype.kind not in "iub":
        raise UserError(f"{source} holds values of type {array.dtype}, not integer levels.")
    if array.size:
        lo, hi = array.min(), array.max()
        if lo < 0 or hi > levels - 1:
            raise UserError(f"{source} holds values outside 0..{levels - 1} (found {lo:g} to {hi:g}); "
                            "state the right number of levels.")
    return torch.from_numpy(array.astype(np.int64))


def as_continuous(array: np.ndarray, source: str) -> Tensor:
    """Finite real values as a default-dtype tensor; non-finite values raise naming `source`."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiub":
        raise UserError(f"{source} holds values of type {array.dtype}, not numbers.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"{source} holds non-finite values (NaN or infinity).")
    return torch.from_numpy(array.astype(np.float64)).to(torch.get_default_dtype())


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """An .npy file as {"x": array}, or an .npz file as its named arrays; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise UserError(f"{path} holds Python objects, which are refused: save plain numeric "
                            "arrays.") from None
        raise UserError(f"{path} is not a readable .npy/.npz array ({_reason(e)}).") from None
    except Exception as e:  # numpy's header parser also raises SyntaxError, TokenError, zlib.error, ...
        raise UserError(f"{path} is truncated or not a .npy/.npz file ({_reason(e)}).") from None


def _reason(e: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), for a sentence."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


def read_png(path: str | Path) -> np.ndarray:
    """A PNG image as a [C, H, W] uint8 array: C = 1 for greyscale, 3 for colour (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise UserError(f"{path} has {img.mode} pixels; only 8-bit greyscale or colour PNGs "
                                "are read.")
            grey = img.mode in ("1", "L", "LA") or (img.mode == "P" and _palette_is_grey(img))
            img = img.convert("L" if grey else "RGB")
            array = np.asarray(img, dtype=np.uint8)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not a readable image.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path} is truncated or corrupt ({e}).") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _palette_is_grey(img) -> bool:
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
