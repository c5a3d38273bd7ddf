"""digits-bpd, the classical ladder (benchmarks.md): every baseline fitted on the 1437 training images
and scored on the 360 test images in bits/dim, with its estimator, standard error and fit time.

    python benchmarks/digits_baselines.py [--seeds 3] [--out benchmarks/results/digits_baselines.json]

The categorical mixture chooses its prior strength and restart on a validation split held out of
train (10%, never the test set), then refits on all of train; it is run for several seeds and the
median reported.  "plain EM" is the same model with a uniform Dirichlet prior, for comparison; the
two are also compared paired, on the same test images.  "numbers": entries of the fitted buffers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from lowerbound.data import load
from lowerbound.eval import likelihood
from lowerbound.models import registry

# name, family, options, reference from benchmarks.md (None: no reference), estimators to report
LADDER = [
    ("uniform", "uniform", {}, 4.087, [None]),
    ("gaussian (full cov., dequantized)", "gaussian", {}, 2.96, [None, "analytic", "importance"]),
    ("gaussian mixture (5, dequantized)", "gaussian-mixture", {"components": 5, "copies": 2}, None,
     [None, "importance"]),
    ("categorical (Laplace)", "categorical", {}, 2.424, [None]),
    ("categorical mixture (20), plain EM", "categorical-mixture",
     {"prior": "uniform", "strengths": [1.7, 8.5, 17.0]}, 2.21, [None]),
    ("categorical mixture (20), marginal prior", "categorical-mixture", {}, 2.21, [None]),
]


def parameters(model) -> int:
    return sum(b.numel() for name, b in model.named_buffers() if name != "fitted")


def run(seeds: int) -> tuple[list[dict], dict]:
    """The ladder rows, and per-example test bounds [360] nats of each (label, seed) for pairing."""
    data = load("digits")
    rows, per_example = [], {}
    for label, family, options, reference, estimators in LADDER:
        stochastic = family == "categorical-mixture"
        runs = []
        for seed in range(seeds if stochastic else 1):
            opts = dict(options, seed=seed) if stochastic else dict(options)
            model = registry.build(family, opts, data.levels, data.shape)
            start = time.perf_counter()
            info = model.fit(data.train, None, progress=True)
            fit_s = time.perf_counter() - start
            results = {}
            for est in estimators:
                samples = 64 if est == "importance" else None
                r = likelihood(model, data, estimator=est, samples=samples, progress=False)
                per_example.setdefault((label, seed), r.per_example)
                results[r.estimator] = {"bits_per_dim": r.value, "stderr": r.stderr, "exact": r.exact,
                                        "seconds": r.seconds}
            runs.append({"seed": seed, "fit_seconds": fit_s, "results": results,
                         "fit_info": {k: v for k, v in info.items() if not isinstance(v, dict)}})
            print(f"  {label} seed {seed}: {json.dumps(results)} fit {fit_s:.1f}s", file=sys.stderr)
        main = [next(iter(r["results"].values()))["bits_per_dim"] for r in runs]
        rows.append({"model": label, "family": family, "options": options, "reference": reference,
                     "parameters": parameters(model), "median_bits_per_dim": statistics.median(main),
                     "runs": runs})
    return rows, per_example


def paired(per_example: dict, a: str, b: str, seeds: int) -> dict:
    """Mean over test examples and seeds of bound_a - bound_b in bits/dim, with the paired stderr."""
    diffs = torch.stack([per_example[(a, s)] - per_example[(b, s)] for s in range(seeds)]).mean(0)
    diffs = diffs / (64 * math.log(2))
    return {"a": a, "b": b, "mean_bits_per_dim": diffs.mean().item(),
            "stderr": (diffs.std() / math.sqrt(len(diffs))).item()}


def table(rows: list[dict]) -> str:
    out = ["| model | test bits/dim | stderr | estimator | tighter estimate | reference | fit s | numbers |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        first = row["runs"][0]["results"]
        est = next(iter(first))
        tighter = "; ".join(f"{v['bits_per_dim']:.4f} ({k})" for k, v in list(first.items())[1:]) or "-"
        value = row["median_bits_per_dim"]
        stderr = statistics.median(next(iter(r["results"].values()))["stderr"] for r in row["runs"])
        if len(row["runs"]) > 1:
            vals = ", ".join(f"{next(iter(r['results'].values()))['bits_per_dim']:.4f}" for r in row["runs"])
            est = f"{est}; median of seeds [{vals}]"
        ref = "-" if row["reference"] is None else f"{row['reference']:.3f}"
        fit = statistics.median(r["fit_seconds"] for r in row["runs"])
        out.append(f"| {row['model']} | {value:.4f} | {stderr:.4f} | {est} | {tighter} | {ref} "
                   f"| {fit:.1f} | {row['parameters']} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the EM mixtures")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "digits_baselines.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows, per_example = run(args.seeds)
    print(table(rows))
    labels = [row["model"] for row in rows if row["family"] == "categorical-mixture"]
    comparison = paired(per_example, labels[1], labels[0], args.seeds)
    print(f"paired, same test images, mean over {args.seeds} seeds: {labels[1]} minus {labels[0]} = "
          f"{comparison['mean_bits_per_dim']:+.4f} +- {comparison['stderr']:.4f} bits/dim")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": "digits-bpd classical ladder", "threads": args.threads,
            "torch": torch.__version__, "seconds": time.perf_counter() - start,
            "note": "measured on a shared 2-core machine: times are pessimistic"}
    out.write_text(json.dumps({"meta": meta, "rows": rows, "paired": comparison}, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
