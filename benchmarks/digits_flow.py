"""digits-bpd for the flow family (benchmarks.md): test bits/dim of scikit-learn's 8x8 digits (17 levels)
by the dequantization bound, uniform against variational dequantization (Flow++, Ho et al. 2019), side
by side, with the tighter importance-weighted dequantization bound (k draws of u) of the same weights.

Protocol: the fixed 1437 / 360 split, a tenth of train held out for validation (the weights with the
best validation bound are kept: early stopping, since 1437 images overfit in seconds), a fixed
wall-clock budget of training through the project's runtime (lowerbound.train.run.train, the loop of
`lowerbound train`), then the test bound (360 images, stderr over images).  Targets: <= 2.20 bits/dim
(below the EM mixture, 2.21, and normflows' early-stopped RealNVP, 2.50; 2.41 importance-weighted).

    flock /work/bench.lock python benchmarks/digits_flow.py [--dequantization uniform variational]
        [--minutes 10] [--set arch=glow] [--loop lr=1e-3] [--iw-k 1000]

Writes benchmarks/results/digits_flow.json, one entry per dequantization.  The machine is shared: the
load average is stored with each number; time-budgeted results under load are pessimistic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flow_common import machine, train_flow, write_json
from lowerbound import data, load
from lowerbound.eval import likelihood
from lowerbound.train.config import parse_value

MODEL = {"arch": "nsf", "transforms": 6, "hidden": [256, 256], "bins": 8, "eval_samples": 16}
LOOP = {"batch_size": 64, "lr": 1e-3, "eval_every": 50, "weight_decay": 0.0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dequantization", nargs="+", default=["uniform", "variational"])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iw-k", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a flow option")
    ap.add_argument("--loop", action="append", default=[], metavar="KEY=VALUE", help="a loop option")
    ap.add_argument("--tag", default="", help="suffix of the JSON keys (e.g. a pilot's name)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "digits_flow.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, loop = dict(MODEL), dict(LOOP)
    for target, items in ((model, args.set), (loop, args.loop)):
        for item in items:
            key, _, value = item.partition("=")
            target[key] = parse_value(value)
    print("| dequantization | test bits/dim | stderr | estimator | nll | dequantization term | "
          f"iw-k={args.iw_k} | valid | steps | ex/s | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    digits = data.load("digits")
    for dq in args.dequantization:
        before = machine()
        res, run_dir = train_flow("digits", {**model, "dequantization": dq}, args.minutes, loop)
        flow = load(str(run_dir))
        iw = likelihood(flow, digits, "test", estimator="iw", samples=args.iw_k, batch_size=40,
                        seed=1, progress=False).to_dict()
        terms = {k: v["value"] for k, v in res["terms"].items()}
        entry = {"benchmark": "digits-bpd", "family": "flow", "model": {**model, "dequantization": dq},
                 "test": {k: res[k] for k in ("bits_per_dim", "stderr", "estimator", "terms", "n")},
                 "test_iw": {k: iw[k] for k in ("bits_per_dim", "stderr", "estimator", "extras",
                                                "estimator_stderr")},
                 "valid": res["splits"]["valid"]["bits_per_dim"],
                 "train": res["splits"]["train"]["bits_per_dim"],
                 "steps": res["steps"], "selected": res["selected"], "examples_per_s": res["examples_per_s"],
                 "train_seconds": res["train_seconds"], "wall_seconds": res["wall_seconds"],
                 "parameters": sum(p.numel() for p in flow.parameters()), "budget_minutes": args.minutes,
                 "loop": res["loop"], "machine_before": before, "machine_after": machine(),
                 "references": {"em_mixture_20": 2.21, "normflows_realnvp_early_stopped": 2.50,
                                "normflows_realnvp_importance_weighted": 2.41}}
        write_json(Path(args.out), dq + args.tag, entry)
        print(f"| {dq} | {res['bits_per_dim']:.4f} | {res['stderr']:.4f} | {res['estimator']} | "
              f"{terms['nll']:.4f} | {terms['dequantization']:.4f} | {iw['bits_per_dim']:.4f} +- "
              f"{iw['stderr']:.4f} | {entry['valid']:.4f} | {res['steps']} | {res['examples_per_s']:.0f} | "
              f"{entry['machine_after']['load_average'][0]} |", flush=True)
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
