"""CIFAR-10's python batches, read as data only: a pickle that may build dicts, lists, strings, bytes,
numbers and plain numpy arrays, and nothing else.

The batches (Krizhevsky 2009, www.cs.toronto.edu/~kriz/cifar.html) are Python pickles, and
unpickling runs whatever callables a file names.  `DataUnpickler.find_class` therefore resolves
only the few globals a numpy array needs - `numpy.ndarray`, `numpy.dtype`, numpy's `_reconstruct`
and `_frombuffer`, and `_codecs.encode` (latin-1 only, used by protocol-2 pickles for bytes) - each
wrapped so it can build a plain numeric array and nothing else; any other global (os.system,
builtins.eval, ...) is refused before it is looked up.  Object arrays are refused too, since their
elements would be unpickled objects.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .formats import read_bytes


def _numpy_core(module: str, name: str):
    for prefix in ("numpy._core", "numpy.core"):  # numpy 2 renamed core to _core
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {module}.{name}")


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asked for something other than plain data."""


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise RefusedPickle(f"an array of type {subtype!r}")
    return _numpy_core("multiarray", "_reconstruct")(np.ndarray, shape, _safe_dtype(dtype))


def _safe_dtype(obj, *args):
    dtype = np.dtype(obj, *args) if not isinstance(obj, np.dtype) else obj
    if dtype.hasobject:
        raise RefusedPickle("an array of Python objects")
    return dtype


def _safe_frombuffer(buffer, dtype, shape, order):
    return _numpy_core("numeric", "_frombuffer")(buffer, _safe_dtype(dtype), shape, order)


def _latin1_encode(text, encoding="latin1", errors="strict"):
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str):
        raise RefusedPickle(f"a call to _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class DataUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals in `_ALLOWED` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise RefusedPickle(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("a persistent object")


def _check_plain(obj: Any, depth: int = 0) -> None:
    """Everything reachable is a plain container, string, number or numeric array."""
    if depth > 20:
        raise RefusedPickle("data nested more than 20 levels deep")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, depth + 1)
    elif isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray or obj.dtype.hasobject:
            raise RefusedPickle("an array that is not plain numbers")
    elif obj is not None and not isinstance(obj, (str, bytes, int, float, bool)):
        raise RefusedPickle(f"an object of type {type(obj).__name__}")


def load_data_pickle(path: str | Path) -> Any:
    """Unpickle `path` as plain data (latin-1 for Python 2 strings, as CIFAR's batches need)."""
    data = read_bytes(path)
    try:
        obj = DataUnpickler(io.BytesIO(data), encoding="latin1").load()
        _check_plain(obj)
    except RefusedPickle as e:
        raise UserError(f"{path} asks to build {e}, which is refused: only dicts, lists, strings, "
                        "bytes, numbers and numeric arrays are read from a pickle.") from None
    except Exception as e:  # a corrupt pickle fails in many ways (AttributeError, KeyError, ...)
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise UserError(f"{path} is truncated or not a data pickle ({type(e).__name__}: {reason}).") from None
    return obj


def read_cifar_batch(path: str | Path) -> np.ndarray:
    """One CIFAR-10 python batch as [N, 3, 32, 32] uint8 (rows of 3072 = R, G, B planes of 32x32)."""
    batch = load_data_pickle(path)
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict.")
    data = batch.get("data", batch.get(b"data"))
    if not isinstance(data, np.ndarray):
        raise UserError(f"{path} is not a CIFAR-10 batch: it has no 'data' array.")
    if data.dtype != np.uint8:
        raise UserError(f"{path} holds {data.dtype} pixels; CIFAR-10 batches hold uint8.")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path} has data of the wrong shape {data.shape}; expected [N, 3072].")
    return data.reshape(-1, 3, 32, 32)
