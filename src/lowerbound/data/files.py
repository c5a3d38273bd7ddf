"""MNIST, Fashion-MNIST and CIFAR-10 from their standard files, as 256 levels (or 2, binarized).

- mnist (LeCun et al. 1998), fashion-mnist (Xiao et al. 2017): the IDX files
  train-images-idx3-ubyte and t10k-images-idx3-ubyte, gzipped or not, under `root`;
  60000 train / 10000 test of shape (1, 28, 28).
- cifar10 (Krizhevsky 2009): the python batches data_batch_1..5 and test_batch under `root` or
  `root`/cifar-10-batches-py, read as data only (safe_pickle.py); 50000 / 10000 of (3, 32, 32).

`root` defaults to $LOWERBOUND_DATA/<name>, else ~/.cache/lowerbound/<name>.  `download=True` fetches
the official files (download.py: MD5-checked, written atomically).  The splits are the official ones.

`binarize` (MNIST-like sets only), since published MNIST numbers depend on it:
- None: 256 levels as stored.
- "threshold": level 1 where the pixel is >= 128 (intensity > 0.5), deterministic.
- "static": one Bernoulli(pixel / 255) draw per pixel, fixed by `seed` (torch.Generator seeds
  2*seed for train, 2*seed + 1 for test).  The same protocol as Salakhutdinov & Murray (2008),
  not the same draw as Larochelle & Murray's (2011) binarized-MNIST files.
- "dynamic": the train split is redrawn every epoch - `Dataset.train_for_epoch(e)` draws
  Bernoulli(pixel / 255) with generator seed (seed, e), and `train` is the epoch-0 draw - while the
  test split is the fixed draw of "static" (as in Burda et al. 2016, IWAE).
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .._config import from_dict
from ..errors import UserError
from .base import Dataset, register
from .download import extract_members, fetch
from .formats import as_levels, read_idx
from .safe_pickle import read_cifar_batch

Binarize = Literal["threshold", "static", "dynamic"]

_MNIST_LIKE = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "files": {"train": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  "test": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3")},
        "cite": "LeCun, Bottou, Bengio & Haffner 1998",
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "files": {"train": ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                  "test": ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79")},
        "cite": "Xiao, Rasul & Vollgraf 2017",
    },
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


@dataclass
class FileOptions:
    root: str | None = None
    download: bool = False
    binarize: str | None = None  # a Binarize mode; checked below for a clearer sentence
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        modes = typing.get_args(Binarize)
        if self.binarize is not None and self.binarize not in modes:
            raise UserError(f"binarize must be one of {', '.join(modes)} (or None), "
                            f"got {self.binarize!r}.")


def default_root(name: str) -> Path:
    base = os.environ.get("LOWERBOUND_DATA") or os.path.join("~", ".cache", "lowerbound")
    return Path(base).expanduser() / name


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_images(name: str, opts: FileOptions) -> dict[str, Tensor]:
    spec = _MNIST_LIKE[name]
    folder = Path(opts.root).expanduser() if opts.root else default_root(name)
    out = {}
    for split, (stem, md5) in spec["files"].items():
        path = _find(folder, stem)
        if path is None and opts.download:
            urls = [m + stem + ".gz" for m in spec["mirrors"]]
            path = fetch(urls, folder / f"{stem}.gz", md5, opts.progress)
        if path is None:
            raise UserError(f"{name} needs {stem} (or {stem}.gz) in {folder}; pass root= to point at "
                            "the files, or download=True (CLI: --download) to fetch them.")
        images = read_idx(path, ndim=3)
        if images.shape[1:] != (28, 28):
            raise UserError(f"{path} holds images of shape {images.shape[1:]}, not 28x28.")
        out[split] = as_levels(images, 256, str(path)).unsqueeze(1)
    return out


def _bernoulli(x: Tensor, seed: int) -> Tensor:
    """One Bernoulli(x / 255) draw per pixel from a seeded generator: long levels 0/1."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(x.shape, generator=g)
    return (u < x.float() / 255.0).long()


def _dynamic_seed(seed: int, epoch: int) -> int:
    """A distinct generator seed for each (seed, epoch) pair, apart from the static seeds."""
    return int(np.random.SeedSequence([seed, epoch, 0xB1]).generate_state(1, np.uint64)[0] >> 1)


def binarized(name: str, train: Tensor, test: Tensor, mode: Binarize, seed: int,
              info: dict) -> Dataset:
    """The two-level data set for `mode` (see the module docstring)."""
    info = dict(info, binarize=mode)
    if mode == "threshold":
        return Dataset(name, (train >= 128).long(), (test >= 128).long(), 2, (1, 28, 28), info=info)
    test_b = _bernoulli(test, 2 * seed + 1)
    if mode == "static":
        info["binarize"] = f"static: one Bernoulli draw, seeds {2 * seed} / {2 * seed + 1}"
        return Dataset(name, _bernoulli(train, 2 * seed), test_b, 2, (1, 28, 28), info=info)
    info["binarize"] = f"dynamic: train redrawn each epoch from (seed {seed}, epoch); test fixed"

    def resample(epoch: int) -> Tensor:
        return _bernoulli(train, _dynamic_seed(seed, epoch))

    return Dataset(name, resample(0), test_b, 2, (1, 28, 28), info=info, resample=resample)


def _load_mnist_like(name: str, arg: str | None, options: dict) -> Dataset:
    if arg is not None:
        raise UserError(f"The {name} data set takes no ':' argument, got {arg!r}.")
    opts = from_dict(FileOptions, options, where=name)
    splits = _idx_images(name, opts)
    info = {"source": f"{_MNIST_LIKE[name]['cite']}, IDX files", "split": "the official 60000 / 10000"}
    if opts.binarize is not None:
        return binarized(name, splits["train"], splits["test"], opts.binarize, opts.seed, info)
    return Dataset(name, splits["train"], splits["test"], 256, (1, 28, 28), info=info)


@register("mnist", "MNIST digits from IDX files, 256 levels (or 2 with binarize=), "
                   "60000 train / 10000 test, 1x28x28 (options root, download, binarize, seed)")
def load_mnist(arg: str | None = None, **options) -> Dataset:
    return _load_mnist_like("mnist", arg, options)


@register("fashion-mnist", "Fashion-MNIST from IDX files, 256 levels, 60000 train / 10000 test, "
                           "1x28x28 (options root, download, binarize, seed)")
def load_fashion_mnist(arg: str | None = None, **options) -> Dataset:
    return _load_mnist_like("fashion-mnist", arg, options)


def _cifar_folder(opts: FileOptions) -> Path:
    root = Path(opts.root).expanduser() if opts.root else default_root("cifar10")
    for folder in (root / CIFAR_DIR, root):
        if all((folder / f).is_file() for f in CIFAR_TRAIN + ["test_batch"]):
            return folder
    if opts.download:
        archive = fetch([CIFAR_URL], root / "cifar-10-python.tar.gz", CIFAR_MD5, opts.progress)
        names = CIFAR_TRAIN + ["test_batch"]
        extract_members(archive, {f"{CIFAR_DIR}/{n}": root / CIFAR_DIR / n for n in names})
        return root / CIFAR_DIR
    raise UserError(f"cifar10 needs data_batch_1..5 and test_batch in {root} or {root / CIFAR_DIR}; "
                    "pass root= to point at them, or download=True (CLI: --download) to fetch them.")


@register("cifar10", "CIFAR-10 from the python batches (read as data only), 256 levels, "
                     "50000 train / 10000 test, 3x32x32 (options root, download)")
def load_cifar10(arg: str | None = None, **options) -> Dataset:
    if arg is not None:
        raise UserError(f"The cifar10 data set takes no ':' argument, got {arg!r}.")
    opts = from_dict(FileOptions, options, where="cifar10")
    if opts.binarize is not None:
        raise UserError("cifar10 cannot be binarized; binarize= applies to mnist and fashion-mnist.")
    folder = _cifar_folder(opts)
    train = np.concatenate([read_cifar_batch(folder / f) for f in CIFAR_TRAIN])
    test = read_cifar_batch(folder / "test_batch")
    return Dataset("cifar10", torch.from_numpy(train.astype(np.int64)),
                   torch.from_numpy(test.astype(np.int64)), 256, (3, 32, 32),
                   info={"source": "Krizhevsky 2009, CIFAR-10 python batches",
                         "split": "the official data_batch_1..5 / test_batch"})
