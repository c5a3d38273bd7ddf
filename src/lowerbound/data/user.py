"""A user's own data: `npy:<file>` (.npy or .npz arrays) and `png:<folder>` (a folder of PNG images).

    load("npy:/path/x.npy", levels=256)    integer levels 0..K-1, shape [N, *shape]
    load("npy:/path/points.npy")           floats without levels: continuous data
    load("npz:/path/d.npz", levels=17)     arrays "train" and "test" if present, else the one array
                                           (or the one named key=)
    load("png:/path/dir")                  8-bit PNGs: [N, 1, H, W] greyscale or [N, 3, H, W] colour

Split: a folder with train/ and test/ subfolders, or an .npz with train and test arrays, keeps its
own split; otherwise perm = numpy.random.default_rng(seed).permutation(N), test = the first
round(test_fraction * N), train = the rest (the rule benchmarks.md uses for digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from .._config import from_dict
from ..errors import UserError
from .base import MAX_LEVELS, Dataset, register
from .formats import as_continuous, as_levels, read_arrays, read_png


@dataclass
class UserOptions:
    levels: int | None = None
    test_fraction: float = 0.2
    seed: int = 0
    key: str | None = None

    def __post_init__(self) -> None:
        if self.levels is not None and not 2 <= self.levels <= MAX_LEVELS:
            raise UserError(f"levels must be between 2 and {MAX_LEVELS}, got {self.levels}; data with "
                            "more levels are continuous (omit levels).")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"test_fraction must be between 0 and 1, got {self.test_fraction}.")


def split_rule(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): test = first round(f N) of default_rng(seed).permutation(N)."""
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n_test >= n:
        raise UserError(f"Cannot split {n} examples with test_fraction={test_fraction}: "
                        "each split needs at least one example.")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def _convert(array: np.ndarray, opts: UserOptions, source: str) -> Tensor:
    if array.ndim < 2:
        raise UserError(f"{source} has shape {array.shape}; expected [N, *shape] with at least 2 axes.")
    if opts.levels is not None:
        return as_levels(array, opts.levels, source)
    if array.dtype.kind in "iub":
        raise UserError(f"{source} holds integers; state their number of levels, e.g. levels=256.")
    return as_continuous(array, source)


def _dataset(name: str, train: Tensor, test: Tensor, levels: int | None, source: str,
             split: str) -> Dataset:
    if train.shape[1:] != test.shape[1:]:
        raise UserError(f"{source} has train examples of shape {tuple(train.shape[1:])} but test "
                        f"examples of shape {tuple(test.shape[1:])}.")
    return Dataset(name, train, test, levels, tuple(train.shape[1:]),
                   info={"source": source, "split": split})


def _split_text(opts: UserOptions) -> str:
    return (f"test = first round({opts.test_fraction} N) of default_rng({opts.seed}).permutation(N), "
            "train = the rest")


def _load_arrays(kind: str, arg: str | None, options: dict) -> Dataset:
    if not arg:
        raise UserError(f"Name the file after the colon, e.g. {kind}:/path/to/data.{kind}.")
    opts = from_dict(UserOptions, options, where=kind)
    arrays = read_arrays(arg)
    name = f"{kind}:{arg}"
    if opts.key is None and {"train", "test"} <= set(arrays):
        train = _convert(arrays["train"], opts, f"{arg} (train)")
        test = _convert(arrays["test"], opts, f"{arg} (test)")
        return _dataset(name, train, test, opts.levels, arg, "the file's own train and test arrays")
    if opts.key is not None and opts.key not in arrays:
        raise UserError(f"{arg} has no array {opts.key!r}; it has: {', '.join(sorted(arrays))}.")
    if opts.key is None and len(arrays) != 1:
        raise UserError(f"{arg} holds several arrays ({', '.join(sorted(arrays))}); name one with key= "
                        "or store arrays named train and test.")
    x = _convert(arrays[opts.key or next(iter(arrays))], opts, arg)
    train_idx, test_idx = split_rule(len(x), opts.test_fraction, opts.seed)
    return _dataset(name, x[train_idx], x[test_idx], opts.levels, arg, _split_text(opts))


@register("npy", "your own array: npy:<file.npy|.npz> with levels=K (integers) or without (floats); "
                 "options levels, test_fraction, seed, key")
def load_npy(arg: str | None = None, **options) -> Dataset:
    return _load_arrays("npy", arg, options)


@register("npz", "same as npy: for .npz files with train/test arrays or one array")
def load_npz(arg: str | None = None, **options) -> Dataset:
    return _load_arrays("npz", arg, options)


def read_png_folder(folder: Path) -> np.ndarray:
    """All *.png in `folder` (sorted by name) as [N, C, H, W] uint8; C = 3 if any image is colour."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise UserError(f"{folder} holds no .png files.")
    images = [read_png(p) for p in files]
    height_width = images[0].shape[1:]
    for path, img in zip(files, images):
        if img.shape[1:] != height_width:
            raise UserError(f"{path} is {img.shape[2]}x{img.shape[1]} pixels but {files[0].name} is "
                            f"{height_width[1]}x{height_width[0]}; all images must be the same size.")
    channels = max(img.shape[0] for img in images)
    return np.stack([np.repeat(img, channels // img.shape[0], axis=0) for img in images])


@register("png", "a folder of PNG images: png:<folder> (train/ and test/ subfolders, or split by "
                 "test_fraction), 256 levels unless levels= says fewer")
def load_png(arg: str | None = None, **options) -> Dataset:
    if not arg:
        raise UserError("Name the folder after the colon, e.g. png:/path/to/images.")
    opts = from_dict(UserOptions, options, where="png")
    if opts.key is not None:
        raise UserError("The png data set takes no key= option.")
    levels = opts.levels or 256
    if levels > 256:
        raise UserError(f"PNG images hold 8-bit pixels, so levels must be at most 256, got {levels}.")
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist or is not a folder.")
    name = f"png:{arg}"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train = as_levels(read_png_folder(folder / "train"), levels, str(folder / "train"))
        test = as_levels(read_png_folder(folder / "test"), levels, str(folder / "test"))
        return _dataset(name, train, test, levels, str(folder), "the folder's train/ and test/")
    x = as_levels(read_png_folder(folder), levels, str(folder))
    train_idx, test_idx = split_rule(len(x), opts.test_fraction, opts.seed)
    return _dataset(name, x[train_idx], x[test_idx], levels, str(folder), _split_text(opts))
