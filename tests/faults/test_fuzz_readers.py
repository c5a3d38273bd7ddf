"""Property: every file reader, given arbitrary bytes, returns data or raises one UserError sentence;
never another exception type (hypothesis).  Bytes are drawn both at random and as valid files with
bytes cut off, replaced or inserted, which reach deeper into each format."""

import gzip
import io
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lowerbound.data.formats import read_arrays, read_idx, read_png
from lowerbound.data.safe_pickle import read_cifar_batch
from lowerbound.data.user import read_png_folder
from lowerbound.errors import UserError
from lowerbound.io import checkpoint, export
from lowerbound.io import metrics as metrics_io
from lowerbound.train.config import read_yaml
from lowerbound.train.rundir import read_config

# modest and derandomized, so the suite stays fast and CI stable; LOWERBOUND_FUZZ=N explores N fresh
# random examples per reader
_N = int(os.environ.get("LOWERBOUND_FUZZ", "0"))
FUZZ = settings(max_examples=_N or 30, derandomize=not _N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, train=np.arange(12).reshape(3, 4), test=np.ones((2, 4)))
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _checkpoint() -> bytes:
    buf = io.BytesIO()
    torch.save({"step": 3, "model": {"w": torch.ones(4)}, "optimizer": {"state": {}}}, buf)
    return buf.getvalue()


def _export() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.ones(3)}, metadata={"lowerbound": '{"schema": 1, "family": "independent"}'})


VALID = {
    "idx": b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + bytes(range(8)),
    "idx.gz": gzip.compress(b"\x00\x00\x08\x03" + (1).to_bytes(4, "big") * 3 + b"\x07"),
    "cifar": pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=2),
    "npy": _npy(np.arange(6).reshape(2, 3)),
    "npz": _npz(),
    "png": _png(),
    "yaml": b"lr: 1e-3\nmodel:\n  hidden: [32, 32]\nsteps: 10\n",
    "json": b'{"family": "vae", "data": "digits", "model": {}}',
    "pt": _checkpoint(),
    "safetensors": _export(),
    "csv": b"step,time,loss_bpd,valid_bpd\n10,0.5,2.5,\n20,1.0,2.4,2.45\n",
}


@st.composite
def damaged(draw, kind: str) -> bytes:
    """Random bytes, or the valid file of `kind` with a few bytes cut, replaced or inserted."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=400))
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "replace", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "truncate":
            del data[at:]
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _call(reader, data: bytes, name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            reader(path)
        except UserError as e:
            text = str(e)
            assert text and "\n" not in text and text.endswith("."), text[:300]
        # anything else propagates and fails the property


def _png_folder(path: Path):
    return read_png_folder(path.parent)


def _metrics(path: Path):
    rows = metrics_io.read(path)
    log = metrics_io.MetricsLog(path)
    log.truncate_after(15)
    for name in (rows[0] if rows else {}):
        metrics_io.column(rows, name)


def _run_config(path: Path):
    path.rename(path.parent / "config.json")
    return read_config(path.parent)


READERS = {
    "idx": (lambda p: read_idx(p, ndim=3), "images-idx3-ubyte"),
    "idx.gz": (read_idx, "t10k-images-idx3-ubyte.gz"),
    "cifar": (read_cifar_batch, "data_batch_1"),
    "npy": (read_arrays, "x.npy"),
    "npz": (read_arrays, "x.npz"),
    "png": (read_png, "a.png"),
    "png-folder": (_png_folder, "a.png"),
    "yaml": (read_yaml, "config.yaml"),
    "json": (_run_config, "x.json"),
    "pt": (checkpoint.load, "step-00000003.pt"),
    "latest": (lambda p: checkpoint.load_latest(p.parent), "latest"),
    "safetensors": (export.load, "model.safetensors"),
    "csv": (_metrics, "metrics.csv"),
}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_reader_gives_data_or_one_sentence(kind):
    reader, name = READERS[kind]
    source = {"png-folder": "png", "latest": "csv"}.get(kind, kind)

    @FUZZ
    @given(data=damaged(source))
    def prop(data):
        _call(reader, data, name)

    prop()


def test_the_property_catches_a_reader_that_leaks_another_exception():
    """The harness itself: a reader raising anything but UserError fails it."""
    def leaky(path):
        int(path.read_bytes()[:1] or b"x")

    with pytest.raises(ValueError):
        _call(leaky, b"z", "f")
