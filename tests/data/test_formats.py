"""File readers on files the tests write: IDX (gzipped and plain), .npy/.npz, PNG; each broken file
refused with one sentence naming the file and the problem."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from lowerbound.data.formats import as_continuous, as_levels, read_arrays, read_idx, read_png
from lowerbound.errors import UserError


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_byte]
    head = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(dtype).tobytes()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (7, 28, 28)).astype(np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, images, gz):
    raw = idx_bytes(images)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    assert np.array_equal(read_idx(path, ndim=3), images)


def test_idx_other_types(tmp_path):
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    (tmp_path / "i").write_bytes(idx_bytes(a, 0x0C))
    assert np.array_equal(read_idx(tmp_path / "i"), a)
    f = np.linspace(0, 1, 5, dtype=np.float32)
    (tmp_path / "f").write_bytes(idx_bytes(f, 0x0D))
    assert np.array_equal(read_idx(tmp_path / "f"), f)


def test_idx_truncated(tmp_path, images):
    path = tmp_path / "t.idx"
    path.write_bytes(idx_bytes(images)[:-10])
    with pytest.raises(UserError, match=rf"{path} is truncated: its header says 7x28x28 values"):
        read_idx(path, ndim=3)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path, images):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    with pytest.raises(UserError, match=r"truncated: its gzip stream ends early"):
        read_idx(path)


def test_idx_wrong_magic(tmp_path, images):
    path = tmp_path / "m.idx"
    path.write_bytes(b"\x12\x34" + idx_bytes(images)[2:])
    with pytest.raises(UserError, match=rf"{path} has the wrong magic number 0x12340803"):
        read_idx(path, ndim=3)
    path.write_bytes(idx_bytes(images[0]))  # a 2-D file where images (3-D) are expected
    with pytest.raises(UserError, match="wrong magic number 0x00000802 .expected 0x00000803"):
        read_idx(path, ndim=3)


def test_idx_trailing_bytes_and_missing(tmp_path, images):
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(images) + b"\x00")
    with pytest.raises(UserError, match="has trailing bytes"):
        read_idx(path)
    with pytest.raises(UserError, match="nope.idx does not exist"):
        read_idx(tmp_path / "nope.idx")


def test_as_levels_accepts_integral_and_refuses_the_rest():
    assert torch.equal(as_levels(np.array([[0.0, 3.0]]), 4, "a"), torch.tensor([[0, 3]]))
    with pytest.raises(UserError, match=r"^src holds values outside 0..3 \(found 0 to 4\)"):
        as_levels(np.array([0, 4]), 4, "src")
    with pytest.raises(UserError, match="outside"):
        as_levels(np.array([-1, 2]), 4, "src")
    with pytest.raises(UserError, match="src holds non-finite values"):
        as_levels(np.array([0.0, np.nan]), 4, "src")
    with pytest.raises(UserError, match="fractional"):
        as_levels(np.array([0.5]), 4, "src")
    with pytest.raises(UserError, match="non-finite"):
        as_continuous(np.array([1.0, np.inf]), "src")


def test_npy_and_npz(tmp_path):
    a = np.arange(12).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", train=a, test=a[:1])
    assert np.array_equal(read_arrays(tmp_path / "a.npy")["x"], a)
    got = read_arrays(tmp_path / "b.npz")
    assert set(got) == {"train", "test"} and np.array_equal(got["test"], a[:1])


def test_npy_with_objects_refused(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match=rf"{path} holds Python objects, which are refused"):
        read_arrays(path)


def test_npy_truncated(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.arange(1000))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match=rf"{path} is"):
        read_arrays(path)


def test_png_grey_and_colour(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (5, 6)).astype(np.uint8)
    rgb = np.random.default_rng(2).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.array_equal(read_png(tmp_path / "g.png"), grey[None])
    assert np.array_equal(read_png(tmp_path / "c.png"), rgb.transpose(2, 0, 1))


def test_png_broken(tmp_path):
    path = tmp_path / "b.png"
    Image.fromarray(np.zeros((40, 40), np.uint8) + 7).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(UserError, match=rf"{path} is truncated or corrupt"):
        read_png(path)
    (tmp_path / "n.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="is not a readable image"):
        read_png(tmp_path / "n.png")
