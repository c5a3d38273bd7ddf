"""`lowerbound demo parzen`: why a GAN's report carries no Parzen-window "log-likelihood".

Theis, van den Oord & Bethge (2016), "A note on the evaluation of generative models", sec. 3.2 and
table 2: a Parzen window (a Gaussian kernel density fitted to a model's samples, its bandwidth chosen
on held-out data) was the usual way to give a GAN a log-likelihood.  It ranks a "model" whose samples
are k-means centroids of the training images above one whose samples are real images.

Here on digits, three sample sets of the same size N, each scored by a Parzen window on the test set
(nats per image, on the [-1, 1] scale; the bandwidth chosen on a tenth of train held out):
  - k-means: the N centroids of the rest of train (blurry averages, no real digit among them);
  - true images: N real training images (samples of the data distribution itself);
  - EM mixture: N samples of a mixture of categorical products fitted by EM (a real model).
and by the bound on -log P(test) in bits/dim that each model's own likelihood gives:
  - k-means, as a model, puts all its mass on its centroids (rounded to levels): -log P = infinity on
    every test image that is not a centroid;
  - true images: the data distribution's own -log P is its entropy, bounded above by any model's
    cross-entropy: H(p_data) <= H(p_data, q), so it is at most the EM mixture's exact test number;
  - EM mixture: its exact test bits/dim.
The Parzen window puts k-means first; the bound puts it last, by an infinite margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor

from ...data import load
from ...errors import UserError
from ...io.panels import Kind, Panel, Series, plot_panels
from ...models import registry
from ...prob.units import LN2, from_signed, to_signed
from .registry import add_option, begin, check_config, register, write_plot

MODELS = ("k-means", "true images", "EM mixture")


@dataclass
class ParzenDemoConfig:
    """n: samples per model (and k-means centroids); components: of the EM mixture; bandwidths: the
    grid of kernel widths tried on validation, log-spaced from 0.01 to 3."""

    n: int = 200
    components: int = 20
    bandwidths: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        check_config(self, integers=("n", "components", "bandwidths"))
        if not 2 <= self.n <= 1000:
            raise UserError(f"n must be between 2 and 1000 (digits has 1293 training images to draw "
                            f"from), got {self.n}.")


def parzen_log_density(samples: Tensor, x: Tensor, sigma: float) -> Tensor:
    """log of (1/N) sum_i N(x; s_i, sigma^2 I) for each row of x [M, D] -> [M] nats (float64)."""
    d = x.shape[1]
    sq = torch.cdist(x.double(), samples.double()).square()
    return (torch.logsumexp(-sq / (2 * sigma ** 2), 1) - math.log(len(samples))
            - d * math.log(sigma * math.sqrt(2 * math.pi)))


def parzen_score(samples: Tensor, valid: Tensor, test: Tensor, bandwidths: int) -> dict:
    """Bandwidth by validation log-likelihood on a log grid; then the test mean and stderr in nats."""
    grid = torch.logspace(-2, math.log10(3.0), bandwidths, dtype=torch.float64)
    scores = torch.stack([parzen_log_density(samples, valid, float(s)).mean() for s in grid])
    sigma = float(grid[scores.argmax()])
    per = parzen_log_density(samples, test, sigma)
    return {"sigma": sigma, "nats": float(per.mean()), "stderr": float(per.std() / math.sqrt(len(per))),
            "per_example": per}


def _bits(nats: Tensor, dims: int) -> tuple[float, float]:
    v = -nats.double() / (dims * LN2)
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


def _models(cfg: ParzenDemoConfig, data, rest: Tensor, valid: Tensor, progress: bool):
    """{name: (samples on the [-1, 1] scale [N, D], bound dict)} for the three models."""
    from sklearn.cluster import KMeans

    d, k = data.dims, data.levels
    y_rest = to_signed(rest, k).flatten(1).double()
    km = KMeans(cfg.n, n_init=1, random_state=cfg.seed).fit(y_rest.numpy())
    centroids = torch.from_numpy(km.cluster_centers_)
    rounded = from_signed(centroids, k)
    test = data.test.flatten(1)
    hits = int((torch.cdist(test.double(), rounded.double()).min(1).values == 0).sum())
    em = registry.build("categorical-mixture", {"components": cfg.components, "strengths": [16.0],
                                                "restarts": 1, "seed": cfg.seed}, k, data.shape)
    em.fit(rest, valid, progress=progress)
    with torch.no_grad():
        em_bits = _bits(-em.bound(data.test).nats, d)
        em_samples = to_signed(em.sample(cfg.n, torch.Generator().manual_seed(cfg.seed)), k)
    g = torch.Generator().manual_seed(cfg.seed)
    true = y_rest[torch.randperm(len(y_rest), generator=g)[:cfg.n]]
    return {
        "k-means": (centroids, {"bits_per_dim": math.inf, "stderr": 0.0, "test_images_matched": hits,
                                "estimator": "exact: point masses on the rounded centroids"}),
        "true images": (true, {"bits_per_dim": em_bits[0], "stderr": em_bits[1], "upper_bound_only": True,
                               "estimator": "H(p_data) <= H(p_data, q_EM): the EM mixture's exact number"}),
        "EM mixture": (em_samples.flatten(1).double(), {"bits_per_dim": em_bits[0], "stderr": em_bits[1],
                                                        "estimator": "exact"}),
    }


@register("parzen", ParzenDemoConfig, "Parzen windows rank k-means centroids above real digits; the "
          "bound does not", options=lambda p: _options(p))
def run_parzen_demo(cfg: ParzenDemoConfig, plot: str | Path | None = None, *, progress: bool = True,
                    out: TextIO | None = None) -> dict:
    """{"models": {name: {"parzen": {sigma, nats, stderr}, "bound": {bits_per_dim, stderr, estimator}}},
    "parzen_kmeans_minus_true": {value, stderr} (paired over test images), "parzen_ranks_kmeans_first",
    "bound_ranks_kmeans_last", "n", "plot"}.  Infinite bits/dim are written as the string "inf"."""
    out = begin(plot, out)
    data = load("digits")
    perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))
    n_valid = len(data.train) // 10
    valid, rest = data.train[perm[:n_valid]], data.train[perm[n_valid:]]
    y_valid = to_signed(valid, data.levels).flatten(1).double()
    y_test = to_signed(data.test, data.levels).flatten(1).double()
    res: dict = {"n": cfg.n, "models": {}}
    per = {}
    for name, (samples, bound) in _models(cfg, data, rest, valid, progress).items():
        score = parzen_score(samples, y_valid, y_test, cfg.bandwidths)
        per[name] = score.pop("per_example")
        res["models"][name] = {"parzen": score, "bound": bound}
    diff = per["k-means"] - per["true images"]
    res["parzen_kmeans_minus_true"] = {"value": float(diff.mean()),
                                       "stderr": float(diff.std() / math.sqrt(len(diff)))}
    parzen = {m: v["parzen"]["nats"] for m, v in res["models"].items()}
    bits = {m: v["bound"]["bits_per_dim"] for m, v in res["models"].items()}
    res["parzen_ranks_kmeans_first"] = max(parzen, key=parzen.get) == "k-means"
    res["bound_ranks_kmeans_last"] = max(bits, key=bits.get) == "k-means"
    _explain(res, out)
    res["plot"] = write_plot(plot, lambda path: _plot(path, res), out)
    for v in res["models"].values():  # JSON has no infinity
        if math.isinf(v["bound"]["bits_per_dim"]):
            v["bound"]["bits_per_dim"] = "inf"
    return res


def _explain(res: dict, out: TextIO) -> None:
    print(f"{res['n']} samples per model; Parzen window on digits test (nats per image, higher ranks "
          f"first), bandwidth chosen on a tenth of train; bound on -log P(test) (bits/dim, lower first)",
          file=out)
    for name, v in res["models"].items():
        p, b = v["parzen"], v["bound"]
        bound = "infinite" if math.isinf(b["bits_per_dim"]) else \
            f"{'<= ' if b.get('upper_bound_only') else ''}{b['bits_per_dim']:.3f} +- {b['stderr']:.3f}"
        print(f"  {name:<12} Parzen {p['nats']:8.2f} +- {p['stderr']:.2f} (sigma {p['sigma']:.3f})   "
              f"bound {bound}  [{b['estimator']}]", file=out)
    d = res["parzen_kmeans_minus_true"]
    print(f"Parzen: k-means minus true images = {d['value']:.2f} +- {d['stderr']:.2f} nats per test image "
          f"(paired): the window prefers blurry centroids to real digits.", file=out)
    print("The bound: k-means puts all its mass on its centroids, so no test digit has any probability "
          f"({res['models']['k-means']['bound']['test_images_matched']} test images equal a centroid).",
          file=out)


def _plot(path, res: dict) -> Path:
    names = list(res["models"])
    xs = list(range(len(names)))
    p = [res["models"][m]["parzen"] for m in names]
    parzen = Panel("Parzen window on test (higher = 'better')", "", "nats per image", [
        Series("Parzen log-likelihood", xs, [v["nats"] for v in p], Kind.BARS),
        Series("+- 2 stderr", xs, [v["nats"] for v in p], Kind.POINTS,
               lower=[v["nats"] - 2 * v["stderr"] for v in p],
               upper=[v["nats"] + 2 * v["stderr"] for v in p]),
    ], xticklabels=names, notes=["k-means centroids rank first"])
    b = [res["models"][m]["bound"] for m in names]
    finite = [v["bits_per_dim"] for v in b if not math.isinf(v["bits_per_dim"])]
    top = 1.5 * max(finite)
    bound = Panel("bound on -log P(test) (lower = better)", "", "bits/dim", [
        Series("bound", xs,
               [top if math.isinf(v["bits_per_dim"]) else v["bits_per_dim"] for v in b], Kind.BARS),
    ], xticklabels=names, notes=["k-means: infinite (drawn at the top)",
                                 "true images: at most the EM mixture's"])
    return plot_panels(path, [parzen, bound], title="Theis et al. 2016: Parzen windows vs the bound, digits")


def _options(parser) -> None:
    add_option(parser, ParzenDemoConfig, "n", "samples per model and k-means centroids")
    add_option(parser, ParzenDemoConfig, "components", "components of the EM mixture")
    add_option(parser, ParzenDemoConfig, "bandwidths", "kernel widths tried on validation")
