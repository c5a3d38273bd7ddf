"""CIFAR-10 batches read as data only: plain arrays come back bit for bit; code is never run."""

import os
import pickle

import numpy as np
import pytest

from lowerbound.data.safe_pickle import load_data_pickle, read_cifar_batch
from lowerbound.errors import UserError


def _batch(n=4, seed=0):
    data = np.random.default_rng(seed).integers(0, 256, (n, 3072)).astype(np.uint8)
    return data, {"batch_label": "testing batch 1 of 1", "labels": list(range(n)), "data": data,
                  "filenames": [f"img_{i}.png".encode() for i in range(n)]}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_round_trip(tmp_path, protocol):
    data, batch = _batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    got = read_cifar_batch(path)
    assert got.shape == (4, 3, 32, 32) and got.dtype == np.uint8
    assert np.array_equal(got.reshape(4, -1), data)
    # R plane first: row i's first 1024 values are the red channel
    assert np.array_equal(got[1, 0].ravel(), data[1, :1024])


def _py2_pickle(raw: bytes, shape=(2, 3)) -> bytes:
    """What Python 2 wrote for {'data': uint8 array}: str (SHORT_BINSTRING) payloads, numpy.core."""
    def s(b):
        return b"U" + bytes([len(b)]) + b

    def i(v):
        return b"K" + bytes([v])

    return (b"\x80\x02}(" + s(b"data")
            + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b")
            + b"\x87R(" + i(1) + i(shape[0]) + i(shape[1]) + b"\x86"
            + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R(" + i(3) + s(b"|")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + i(0) + b"tb\x89" + s(raw) + b"tb"
            + s(b"labels") + b"]" + i(1) + b"au.")


def test_python2_pickle_as_cifar_writes_it(tmp_path):
    raw = bytes(range(200, 206))
    path = tmp_path / "py2"
    path.write_bytes(_py2_pickle(raw))
    assert np.array_equal(pickle.loads(path.read_bytes(), encoding="latin1")["data"],
                          np.frombuffer(raw, np.uint8).reshape(2, 3))  # the oracle: plain pickle
    got = load_data_pickle(path)
    assert np.array_equal(got["data"], np.frombuffer(raw, np.uint8).reshape(2, 3))
    assert got["labels"] == [1]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_refused_and_not_run(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Payload(marker)}, protocol=2))
    with pytest.raises(UserError, match=rf"{path} asks to build posix.mkdir, which is refused"):
        read_cifar_batch(path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("obj, what", [
    ({"data": np.array([1, "x"], dtype=object)}, "an array of Python objects"),
    ({"data": {1, 2}}, "__builtin__.set"),  # protocol 2 names Python 2 modules
    ({"data": np.ma.masked_array([1, 2])}, "numpy.ma.core"),
])
def test_non_plain_objects_refused(tmp_path, obj, what):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UserError, match=f"asks to build {what}"):
        load_data_pickle(path)


def test_truncated_and_wrong_content(tmp_path):
    _, batch = _batch()
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, protocol=2)[:1000])
    with pytest.raises(UserError, match=rf"{path} is truncated or not a data pickle"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps({"labels": [1]}))
    with pytest.raises(UserError, match="no 'data' array"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8)}))
    with pytest.raises(UserError, match=r"wrong shape \(2, 100\)"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.float32)}))
    with pytest.raises(UserError, match="float32 pixels"):
        read_cifar_batch(path)
