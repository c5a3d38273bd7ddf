"""Sample quality, the same yardstick for every family (and the only one a GAN has).

In the feature space of eval.features (a classifier trained on the data set, or raw values):

- Fréchet distance (Heusel et al. 2017): ||mu_r - mu_s||^2 + Tr(S_r + S_s - 2 (S_r S_s)^(1/2)) between
  Gaussians fitted to reference and sample features, computed by torchmetrics'
  FrechetInceptionDistance with our feature map.  A plug-in estimator, biased upward: two independent
  sets of n and m draws of one distribution score about Tr(S) (1/n + 1/m) + O(1/n) for the covariance
  part, not 0; a set against itself scores exactly 0.  Its stderr: a bootstrap over the samples.
- KID (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel (torchmetrics'
  poly_mmd), averaged over disjoint subsets, so that the stderr over subsets is honest.
- precision, recall (Kynkäänniemi et al. 2019), density, coverage (Naeem et al. 2020): k-nearest-
  neighbour balls around reference (and sample) features; a point on a ball's boundary counts as
  inside (ties: exact duplicates are common on discrete data).  Stderr: binomial over the points
  (density: over samples), given the balls.
- memorization: each sample's distance to its nearest train example, over the median distance of the
  reference examples to their nearest train example, in raw value space; a copy of train scores 0,
  fresh examples of the data distribution about 1.  exact_copies: the fraction of samples equal to a
  train example.

Every result names the feature net and its hash: numbers are comparable within one feature net only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..data.base import Dataset
from ..errors import UserError
from .features import Features, for_dataset, raw_values

NEIGHBOURS = 5
BOOTSTRAP = 20


class _Given(torch.nn.Module):
    """The 'feature extractor' handed to torchmetrics: our features are computed already."""

    def __init__(self, dims: int):
        super().__init__()
        self.num_features = dims

    def forward(self, f: Tensor) -> Tensor:
        return f


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [n, F], [m, F] (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Given(real.shape[1])).double()
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return max(0.0, float(fid.compute()))


def kid(real: Tensor, fake: Tensor, subsets: int = 10, seed: int = 0) -> dict[str, Any]:
    """Unbiased MMD^2 (cubic kernel) over `subsets` disjoint subsets of both sets: mean and stderr."""
    from torchmetrics.image.kid import poly_mmd

    size = min(len(real), len(fake)) // subsets
    if size < 2:
        raise UserError(f"KID needs at least {2 * subsets} samples and reference examples, "
                        f"got {len(fake)} and {len(real)}.")
    g = torch.Generator().manual_seed(seed)
    pr, pf = torch.randperm(len(real), generator=g), torch.randperm(len(fake), generator=g)
    values = torch.stack([poly_mmd(real[pr[i * size:(i + 1) * size]], fake[pf[i * size:(i + 1) * size]])
                          for i in range(subsets)]).double()
    return {"mean": float(values.mean()), "stderr": float(values.std() / math.sqrt(subsets)),
            "subsets": subsets, "subset_size": size}


def _radii(f: Tensor, k: int) -> Tensor:
    """Distance of each point to its k-th nearest neighbour in its own set (itself excluded)."""
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


def prdc(real: Tensor, fake: Tensor, k: int = NEIGHBOURS) -> dict[str, tuple[float, float]]:
    """precision, recall, density, coverage, each (value, stderr); boundaries count as inside."""
    if min(len(real), len(fake)) <= k:
        raise UserError(f"Precision and recall need more than k = {k} samples and reference examples.")
    r_real, r_fake = _radii(real, k), _radii(fake, k)
    d = torch.cdist(fake, real)  # [m, n]
    inside = d <= r_real.unsqueeze(0)  # sample j in the ball of reference i
    precision = inside.any(1).double()
    recall = (d <= r_fake.unsqueeze(1)).any(0).double()
    density = inside.sum(1).double() / k
    coverage = (d.min(0).values <= r_real).double()
    return {name: (float(v.mean()), float(v.std() / math.sqrt(len(v))))
            for name, v in (("precision", precision), ("recall", recall), ("density", density),
                            ("coverage", coverage))}


def memorization(samples: Tensor, reference: Tensor, train: Tensor) -> dict[str, float]:
    """Nearest-train distances of the samples over the reference's median one (raw values)."""
    t = raw_values(train)
    d_samples = torch.cdist(raw_values(samples), t).min(1).values
    baseline = torch.cdist(raw_values(reference), t).min(1).values.median()
    ratio = d_samples / baseline.clamp_min(1e-12)
    return {"value": float(ratio.mean()), "stderr": float(ratio.std() / math.sqrt(len(ratio))),
            "median": float(ratio.median()), "exact_copies": float((d_samples == 0).double().mean())}


def _bootstrap_fd(real: Tensor, fake: Tensor, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    values = [frechet_distance(real, fake[torch.randint(len(fake), (len(fake),), generator=g)])
              for _ in range(BOOTSTRAP)]
    return float(torch.tensor(values, dtype=torch.float64).std())


def sample_quality(samples: Tensor, dataset: Dataset, split: str = "test", *, x: Tensor | None = None,
                   features: Features | None = None, k: int = NEIGHBOURS, kid_subsets: int = 10,
                   seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Every sample metric of `samples` [N, *shape] against `split` of `dataset` (or against x, the
    examples of a split such as validation, which `split` then names).  A plain JSON-ready dict."""
    reference = dataset.split(split) if x is None else x
    if tuple(samples.shape[1:]) != tuple(dataset.shape):
        raise UserError(f"The samples have shape {tuple(samples.shape[1:])}, but {dataset.name} "
                        f"has shape {tuple(dataset.shape)}.")
    if not bool(torch.isfinite(samples.double()).all()):
        raise UserError("The samples hold values that are not finite.")
    features = features or for_dataset(dataset, progress=progress)
    real, fake = features(reference), features(samples)
    fd = frechet_distance(real, fake)
    out: dict[str, Any] = {
        "feature_net": features.describe(), "split": split, "n_samples": len(samples),
        "n_reference": len(reference), "k": k,
        "frechet_distance": fd, "kid": kid(real, fake, kid_subsets, seed)}
    stderr = {"frechet_distance": _bootstrap_fd(real, fake, seed)}
    for name, (value, se) in prdc(real, fake, k).items():
        out[name], stderr[name] = value, se
    mem = memorization(samples, reference, dataset.train)
    out["memorization"], stderr["memorization"] = mem["value"], mem["stderr"]
    out["exact_copies"] = mem["exact_copies"]
    out["stderr"] = stderr
    out["estimators"] = {
        "frechet_distance": "plug-in Gaussian fit (torchmetrics), stderr by bootstrap over samples",
        "kid": f"unbiased MMD^2, cubic kernel, mean over {kid_subsets} disjoint subsets",
        "precision/recall/density/coverage": f"k = {k} nearest-neighbour balls, boundary inside",
        "memorization": "mean nearest-train distance / median reference nearest-train distance, raw values"}
    return out


def sample_table(m: dict[str, Any]) -> list[str]:
    """Printed lines: every metric with its stderr, the split and the feature net (name and hash)."""
    se = m.get("stderr", {})
    lines = [f"sample metrics: {m['n_samples']} samples against {m['n_reference']} {m['split']} examples",
             f"  feature net: {m['feature_net']['name']} [{m['feature_net']['hash']}]"]
    fd = m["frechet_distance"]
    lines.append(f"  {'frechet_distance':<17} {fd:.4f} +- {se.get('frechet_distance', 0):.4f}")
    lines.append(f"  {'kid':<17} {m['kid']['mean']:.5f} +- {m['kid']['stderr']:.5f}")
    for name in ("precision", "recall", "density", "coverage", "memorization"):
        lines.append(f"  {name:<17} {m[name]:.4f} +- {se.get(name, 0):.4f}")
    lines.append(f"  {'exact_copies':<17} {m['exact_copies']:.4f}")
    lines.append("  (scores are comparable only within one feature net)")
    return lines
