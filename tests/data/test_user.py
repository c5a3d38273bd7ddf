"""A user's own data: npy/npz arrays and PNG folders, their split rule, and their error sentences."""

import numpy as np
import pytest
import torch
from PIL import Image

from lowerbound.data import load
from lowerbound.errors import UserError


def test_npy_levels_and_split_rule(tmp_path):
    x = np.random.default_rng(0).integers(0, 17, (50, 1, 4, 4))
    path = tmp_path / "x.npy"
    np.save(path, x)
    ds = load(f"npy:{path}", levels=17)
    perm = np.random.default_rng(0).permutation(50)  # test = first round(0.2 N) of the permutation
    assert ds.levels == 17 and ds.shape == (1, 4, 4)
    assert np.array_equal(ds.test.numpy(), x[perm[:10]]) and np.array_equal(ds.train.numpy(), x[perm[10:]])
    other = load(f"npy:{path}", levels=17, seed=1, test_fraction=0.5)
    assert len(other.test) == 25 and not torch.equal(other.test[:10], ds.test)


def test_npz_train_test_and_key(tmp_path):
    a, b = np.arange(24).reshape(6, 4) % 5, np.arange(8).reshape(2, 4) % 5
    np.savez(tmp_path / "d.npz", train=a, test=b)
    ds = load(f"npz:{tmp_path / 'd.npz'}", levels=5)
    assert np.array_equal(ds.train.numpy(), a) and np.array_equal(ds.test.numpy(), b)
    np.savez(tmp_path / "k.npz", images=a, labels=np.arange(6))
    with pytest.raises(UserError, match="holds several arrays .images, labels.; name one with key="):
        load(f"npy:{tmp_path / 'k.npz'}", levels=5)
    assert len(load(f"npy:{tmp_path / 'k.npz'}", levels=5, key="images").train) == 5
    with pytest.raises(UserError, match="has no array 'x'"):
        load(f"npy:{tmp_path / 'k.npz'}", levels=5, key="x")


def test_float_array_without_levels_is_continuous(tmp_path):
    pts = np.random.default_rng(1).normal(size=(20, 2))
    np.save(tmp_path / "p.npy", pts)
    ds = load(f"npy:{tmp_path / 'p.npy'}")
    assert ds.levels is None and ds.train.dtype == torch.get_default_dtype() and ds.shape == (2,)


@pytest.mark.parametrize("array, options, message", [
    (np.array([[0, 1], [2, 300]]), {"levels": 256}, r"holds values outside 0..255 \(found 0 to 300\)"),
    (np.array([[0.0, np.nan], [1, 2]]), {"levels": 4}, "holds non-finite values"),
    (np.array([[0.0, np.inf], [1, 2]]), {}, "holds non-finite values"),
    (np.array([[0, 1], [2, 3]]), {}, "holds integers; state their number of levels"),
    (np.arange(10), {"levels": 10}, r"has shape \(10,\); expected \[N, \*shape\]"),
])
def test_npy_errors_name_the_file(tmp_path, array, options, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(UserError, match=f"^{path}.*{message}"):
        load(f"npy:{path}", **options)


def test_npy_missing_and_unnamed(tmp_path):
    with pytest.raises(UserError, match="nope.npy does not exist"):
        load(f"npy:{tmp_path / 'nope.npy'}", levels=2)
    with pytest.raises(UserError, match="Name the file after the colon"):
        load("npy", levels=2)
    np.savez(tmp_path / "m.npz", train=np.zeros((3, 2), int), test=np.zeros((3, 5), int))
    with pytest.raises(UserError, match=r"train examples of shape \(2,\) but test examples of shape \(5,\)"):
        load(f"npy:{tmp_path / 'm.npz'}", levels=2)


def _pngs(folder, n, size=(6, 5), mode="L", seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    arrays = [rng.integers(0, 256, shape).astype(np.uint8) for _ in range(n)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{i:03d}.png")
    return arrays


def test_png_folder_split(tmp_path):
    arrays = _pngs(tmp_path, 10)
    ds = load(f"png:{tmp_path}")
    assert ds.levels == 256 and ds.shape == (1, 5, 6) and len(ds.train) == 8 and len(ds.test) == 2
    perm = np.random.default_rng(0).permutation(10)
    assert np.array_equal(ds.test[:, 0].numpy(), np.stack(arrays)[perm[:2]])


def test_png_train_test_subfolders_and_colour(tmp_path):
    train = _pngs(tmp_path / "train", 3, mode="RGB")
    _pngs(tmp_path / "test", 2, mode="RGB", seed=1)
    ds = load(f"png:{tmp_path}")
    assert ds.shape == (3, 5, 6) and len(ds.train) == 3 and len(ds.test) == 2
    assert np.array_equal(ds.train[0].numpy(), train[0].transpose(2, 0, 1))


def test_png_errors(tmp_path):
    _pngs(tmp_path, 3)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "zzz.png")
    with pytest.raises(UserError, match="zzz.png is 9x9 pixels but 000.png is 6x5"):
        load(f"png:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no .png files"):
        load(f"png:{tmp_path / 'empty'}")
    with pytest.raises(UserError, match="does not exist or is not a folder"):
        load(f"png:{tmp_path / 'missing'}")
    (tmp_path / "zzz.png").unlink()
    with pytest.raises(UserError, match=r"holds values outside 0..15"):
        load(f"png:{tmp_path}", levels=16)
