"""The feature space every sample metric is measured in: a small net trained here, per data set.

Fréchet Inception Distance (Heusel et al. 2017) and its relatives measure distances between
samples in the feature space of a network trained on labelled images.  An Inception net trained
on ImageNet knows nothing of 8x8 digits, so, as the FD and KID papers do for their own data, we
train a small classifier on the data set's train split (its labels) and take its penultimate layer:
`Features` maps integer levels [N, *shape] to [N, F].  Data sets without labels use their raw
values (levels scaled to [-1, 1], or the points themselves).

Scores are comparable only within one feature net: every report names it and gives the SHA-256 of
its weights and of the data it was trained on.  Training is deterministic (fixed seed, one
thread) and takes seconds on digits; the weights are cached under the user cache directory
($LOWERBOUND_CACHE, else $XDG_CACHE_HOME/lowerbound, else ~/.cache/lowerbound), keyed by the hash
of the data and the net's recipe, and a file lock keeps two processes from training it at once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.base import Dataset
from ..nets.conv import ConvEncoder
from ..nets.mlp import MLP
from ..prob.units import to_signed

RECIPE = ("classifier-v1: conv (32, 64) -> 64 SiLU features -> linear; AdamW 1e-3, wd 1e-4, 40 epochs, "
          "batch 64")
EPOCHS, BATCH, WIDTH, SEED = 40, 64, 64, 0


def cache_dir() -> Path:
    env = os.environ.get("LOWERBOUND_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lowerbound"


def tensor_hash(*tensors: Tensor, extra: str = "") -> str:
    """SHA-256 (hex) of the tensors' bytes (contiguous, on the CPU) and a string."""
    h = hashlib.sha256(extra.encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class Classifier(nn.Module):
    """[N, *shape] floats -> ([N, WIDTH] features, [N, classes] logits)."""

    def __init__(self, shape: tuple[int, ...], classes: int):
        super().__init__()
        if len(shape) == 3:
            self.body = ConvEncoder(shape[0], (shape[1], shape[2]), WIDTH, (32, 64), 128, dropout=0.1)
        else:
            self.body = nn.Sequential(nn.Flatten(), MLP(int(torch.tensor(shape).prod()), WIDTH, (128,)))
        self.head = nn.Linear(WIDTH, classes)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        f = nn.functional.silu(self.body(y))
        return f, self.head(f)


@dataclass
class Features:
    """The feature map of one data set: name, kind ("classifier" or "raw"), hash, dims, and the net
    (None for raw values).  Call it on integer levels (or points) [N, *shape] -> [N, dims] float64."""

    name: str
    kind: str
    hash: str
    dims: int
    levels: int | None
    net: Classifier | None = None
    test_accuracy: float | None = None
    scale: float = 1.0  # features are multiplied by it: unit mean square per dimension on train

    def __call__(self, x: Tensor, batch_size: int = 512) -> Tensor:
        return self._raw(x, batch_size) * self.scale

    def _raw(self, x: Tensor, batch_size: int) -> Tensor:
        y = _inputs(x.cpu(), self.levels)
        if self.net is None:
            return y.reshape(len(y), -1).double()
        self.net.eval()
        with torch.no_grad():
            parts = [self.net(y[i:i + batch_size])[0] for i in range(0, len(y), batch_size)]
        return torch.cat(parts).double()

    def describe(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "hash": self.hash, "dims": self.dims}
        if self.test_accuracy is not None:
            out["test_accuracy"] = round(self.test_accuracy, 4)
        return out


def _inputs(x: Tensor, levels: int | None) -> Tensor:
    """What the net sees: levels on [-1, 1] (or the points themselves)."""
    return to_signed(x, levels) if levels is not None else x.to(torch.get_default_dtype())


def raw_values(x: Tensor) -> Tensor:
    """Examples as flat float64 vectors: the space the memorization distances are measured in."""
    return x.reshape(len(x), -1).double()


def for_dataset(dataset: Dataset, *, directory: Path | None = None, progress: bool = False) -> Features:
    """The data set's feature map: a cached classifier where it has train labels, else raw values."""
    if dataset.train_labels is None:
        data_hash = tensor_hash(dataset.train, extra=dataset.name)
        return Features(f"raw values of {dataset.name}", "raw", f"sha256:{data_hash[:16]} (data)",
                        dataset.dims, dataset.levels)
    data_hash = tensor_hash(dataset.train, dataset.train_labels, extra=dataset.name + RECIPE)
    folder = Path(directory) if directory is not None else cache_dir()
    path = folder / f"features-{dataset.name}-{data_hash[:16]}.pt"
    classes = int(dataset.train_labels.max()) + 1
    net = Classifier(tuple(dataset.shape), classes)
    net.load_state_dict(_cached_weights(path, dataset, classes, progress))
    weights = tensor_hash(*net.state_dict().values())
    features = Features(f"{dataset.name} classifier penultimate layer ({WIDTH}-d, {RECIPE.split(':')[0]})",
                        "classifier", f"sha256:{weights[:16]} (weights), sha256:{data_hash[:16]} (data)",
                        WIDTH, dataset.levels, net, _accuracy(net, dataset))
    # KID's cubic kernel (x.y / F + 1)^3 expects features of order 1, as Inception's are
    features.scale = float(features._raw(dataset.train, 512).square().mean().rsqrt())
    return features


def _cached_weights(path: Path, dataset: Dataset, classes: int, progress: bool) -> dict[str, Tensor]:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a damaged cache file is retrained, never trusted
                path.unlink()
        weights = train_classifier(dataset, classes, progress)
        tmp = path.with_suffix(".tmp")
        torch.save(weights, tmp)
        os.replace(tmp, path)
        return weights


def train_classifier(dataset: Dataset, classes: int, progress: bool = False) -> dict[str, Tensor]:
    """The classifier's weights after EPOCHS of AdamW on the train split, deterministically."""
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-reproducible weights, whatever the machine's thread count
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            net = Classifier(tuple(dataset.shape), classes)
            y = _inputs(dataset.train, dataset.levels)
            labels = dataset.train_labels
            opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
            g = torch.Generator().manual_seed(SEED)
            net.train()
            for _ in tqdm(range(EPOCHS), desc=f"feature net for {dataset.name}", disable=not progress,
                          leave=False):
                perm = torch.randperm(len(y), generator=g)
                for i in range(0, len(y), BATCH):
                    idx = perm[i:i + BATCH]
                    loss = nn.functional.cross_entropy(net(y[idx])[1], labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _accuracy(net: Classifier, dataset: Dataset) -> float | None:
    """Test accuracy, for reporting only (nothing is chosen by it)."""
    if dataset.test_labels is None:
        return None
    y = _inputs(dataset.test, dataset.levels)
    net.eval()
    with torch.no_grad():
        return float((net(y)[1].argmax(1) == dataset.test_labels).double().mean())
