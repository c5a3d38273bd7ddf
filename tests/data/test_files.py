"""mnist / fashion-mnist / cifar10 from small files the tests write; binarization; the download path
exercised on file:// URLs only (no network): hash checks, atomic writes, nothing left on failure."""

import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from lowerbound.data import files, load
from lowerbound.errors import UserError

from .test_formats import idx_bytes


def _mnist_folder(folder, n_train=7, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8)
    test = rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in (("train-images-idx3-ubyte", train), ("t10k-images-idx3-ubyte", test)):
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return train, test


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_like_from_root(tmp_path, name, gz):
    train, test = _mnist_folder(tmp_path, gz=gz)
    ds = load(name, root=str(tmp_path))
    assert ds.levels == 256 and ds.shape == (1, 28, 28) and ds.train.dtype == torch.long
    assert np.array_equal(ds.train[:, 0].numpy(), train) and np.array_equal(ds.test[:, 0].numpy(), test)


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match=rf"mnist needs train-images-idx3-ubyte .* in {tmp_path}"):
        load("mnist", root=str(tmp_path))
    with pytest.raises(UserError, match="cifar10 needs data_batch_1..5"):
        load("cifar10", root=str(tmp_path))


def test_binarize_threshold_and_static(tmp_path):
    train, test = _mnist_folder(tmp_path, n_train=20)
    th = load("mnist", root=str(tmp_path), binarize="threshold")
    assert th.levels == 2 and torch.equal(th.train[:, 0], torch.from_numpy(train >= 128).long())
    a = load("mnist", root=str(tmp_path), binarize="static")
    b = load("mnist", root=str(tmp_path), binarize="static")
    assert a.levels == 2 and torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert set(a.train.unique().tolist()) <= {0, 1}
    # a Bernoulli(x / 255) draw: its mean matches the intensity's mean within the standard error
    p = train.astype(np.float64) / 255
    se = np.sqrt((p * (1 - p)).sum()) / p.size
    assert abs(a.train.double().mean().item() - p.mean()) < 4 * se
    # a pixel at 0 is always 0 and at 255 always 1
    assert (a.train[:, 0][torch.from_numpy(train == 0)] == 0).all()
    assert (a.train[:, 0][torch.from_numpy(train == 255)] == 1).all()


def test_binarize_dynamic_redraws_train_each_epoch(tmp_path):
    _mnist_folder(tmp_path, n_train=20)
    dyn = load("mnist", root=str(tmp_path), binarize="dynamic", seed=3)
    static = load("mnist", root=str(tmp_path), binarize="static", seed=3)
    assert torch.equal(dyn.train_for_epoch(0), dyn.train)
    e1, e1_again, e2 = dyn.train_for_epoch(1), dyn.train_for_epoch(1), dyn.train_for_epoch(2)
    assert torch.equal(e1, e1_again) and not torch.equal(e1, e2) and not torch.equal(e1, dyn.train)
    assert torch.equal(dyn.test, static.test)  # the test split is one fixed draw
    assert static.train_for_epoch(5) is static.train


def test_binarize_refused_for_cifar_and_bad_mode(tmp_path):
    with pytest.raises(UserError, match="cannot be binarized"):
        load("cifar10", root=str(tmp_path), binarize="static")
    with pytest.raises(UserError, match="binarize must be one of threshold, static, dynamic"):
        load("mnist", root=str(tmp_path), binarize="sometimes")


def _cifar_batches(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for k, name in enumerate(files.CIFAR_TRAIN + ["test_batch"]):
        data = np.random.default_rng(k).integers(0, 256, (n, 3072)).astype(np.uint8)
        blobs[name] = data
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": [0] * n}, protocol=2))
    return blobs


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_from_batches(tmp_path, nested):
    blobs = _cifar_batches(tmp_path / files.CIFAR_DIR if nested else tmp_path)
    ds = load("cifar10", root=str(tmp_path))
    assert ds.levels == 256 and ds.shape == (3, 32, 32) and ds.train.shape == (15, 3, 32, 32)
    want = np.concatenate([blobs[n] for n in files.CIFAR_TRAIN]).reshape(-1, 3, 32, 32)
    assert np.array_equal(ds.train.numpy(), want)
    assert np.array_equal(ds.test.numpy(), blobs["test_batch"].reshape(-1, 3, 32, 32))


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_mnist_from_file_urls(tmp_path, monkeypatch):
    server = tmp_path / "server"
    train, _ = _mnist_folder(server)
    spec = dict(files._MNIST_LIKE["mnist"])
    spec["mirrors"] = [f"file://{tmp_path}/no-such-mirror/", f"file://{server}/"]  # first one fails
    spec["files"] = {s: (stem, _md5(server / f"{stem}.gz")) for s, (stem, _) in spec["files"].items()}
    monkeypatch.setitem(files._MNIST_LIKE, "mnist", spec)
    root = tmp_path / "root"
    ds = load("mnist", root=str(root), download=True, progress=False)
    assert np.array_equal(ds.train[:, 0].numpy(), train)
    assert sorted(p.name for p in root.iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                      "train-images-idx3-ubyte.gz"]


def test_download_with_wrong_hash_writes_nothing(tmp_path, monkeypatch):
    server = tmp_path / "server"
    _mnist_folder(server)
    spec = dict(files._MNIST_LIKE["mnist"], mirrors=[f"file://{server}/"])
    spec["files"] = {s: (stem, "0" * 32) for s, (stem, _) in spec["files"].items()}
    monkeypatch.setitem(files._MNIST_LIKE, "mnist", spec)
    root = tmp_path / "root"
    with pytest.raises(UserError, match="has MD5 [0-9a-f]{32}, not the published 0{32}; it was deleted"):
        load("mnist", root=str(root), download=True, progress=False)
    assert list(root.iterdir()) == []


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def test_download_cifar_extracts_only_the_batches(tmp_path, monkeypatch):
    blobs = _cifar_batches(tmp_path / "src")
    members = {f"{files.CIFAR_DIR}/{n}": (tmp_path / "src" / n).read_bytes() for n in blobs}
    members["../escape"] = b"outside"
    archive = tmp_path / "cifar.tar.gz"
    _tar(archive, members)
    monkeypatch.setattr(files, "CIFAR_URL", f"file://{archive}")
    monkeypatch.setattr(files, "CIFAR_MD5", _md5(archive))
    root = tmp_path / "root"
    ds = load("cifar10", root=str(root), download=True, progress=False)
    assert np.array_equal(ds.test.numpy(), blobs["test_batch"].reshape(-1, 3, 32, 32))
    assert not (tmp_path / "escape").exists() and not (root.parent / "escape").exists()


def test_download_cifar_refuses_a_link_member(tmp_path, monkeypatch):
    members = {f"{files.CIFAR_DIR}/{n}": b"x" for n in files.CIFAR_TRAIN + ["test_batch"]}
    members[f"{files.CIFAR_DIR}/data_batch_1"] = None  # a symlink where a file should be
    archive = tmp_path / "cifar.tar.gz"
    _tar(archive, members)
    monkeypatch.setattr(files, "CIFAR_URL", f"file://{archive}")
    monkeypatch.setattr(files, "CIFAR_MD5", _md5(archive))
    with pytest.raises(UserError, match="data_batch_1 is not a regular file"):
        load("cifar10", root=str(tmp_path / "root"), download=True, progress=False)
