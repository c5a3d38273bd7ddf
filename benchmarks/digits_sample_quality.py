"""Sample quality beside the bound on digits (issue 11): the GAN's sample metrics next to those of the
VAE, DDPM and VDM, in one table with each family's test bits/dim ("no likelihood" for the GAN).

Every model trains through the common runtime (`lowerbound.train`: the loop, validation selection on
a tenth of train, EMA weights, checkpoints) for a wall-clock budget, in a run directory under --root;
its test bound is the one the run reports; then --samples samples (fixed seed) are scored by
`lowerbound.eval.sample_quality` against the 360 test images in the digits feature net (named with
its hash in the JSON; numbers are comparable within one feature net only).  The same number of
samples for every family, since FD's bias and precision/recall's k-NN balls depend on it.

    flock /work/bench.lock python benchmarks/digits_sample_quality.py --skip-done    # repeat until all are in
    python benchmarks/digits_sample_quality.py --table          # print the table of what is stored

Results accumulate by family in benchmarks/results/digits_sample_quality.json (or --out).  The
machine is shared: the load average is stored with each row, and time-budgeted numbers measured
under load are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

import lowerbound
from lowerbound import data as datasets
from lowerbound.train import run as run_module
from lowerbound.train.inspect import sample_metrics
from machine_info import cpu_model

RESULTS = Path(__file__).parent / "results" / "digits_sample_quality.json"
MINUTES = {"gan": 5.0, "vae": 1.0, "diffusion": 2.0, "vdm": 2.0}
PRDC = ("precision", "recall", "density", "coverage", "memorization")
SETS = {"gan": ["eval_every=250", "patience=20", "lr=2e-4"], "vae": [], "diffusion": [], "vdm": []}




def one_family(family: str, minutes: float, samples: int, root: Path) -> dict:
    run_dir = root / family
    if run_dir.exists():
        shutil.rmtree(run_dir)
    flags = {"data": "digits", "minutes": minutes, "steps": 10**9}
    cfg, run_dir = run_module.configure(family, [flags], SETS.get(family, []), str(run_dir), False)
    start = time.perf_counter()
    result = run_module.train(cfg, run_dir, progress=True)
    seconds = time.perf_counter() - start
    model = lowerbound.load(run_dir)
    t0 = time.perf_counter()
    metrics = sample_metrics(model, datasets.load("digits"), "test", None, samples, seed=0)
    row = {"family": family, "minutes_budget": minutes, "steps": result.get("steps"),
           "stopped": result.get("stopped"), "selected": result.get("selected"),
           "train_and_score_seconds": round(seconds, 1),
           "sample_metrics_seconds": round(time.perf_counter() - t0, 1),
           "load_average": os.getloadavg(), "cpu": cpu_model(), "threads": torch.get_num_threads(),
           "sample_metrics": metrics}
    if "bits_per_dim" in result:
        row.update(bits_per_dim=result["bits_per_dim"], stderr=result["stderr"],
                   estimator=result["estimator"])
    else:
        row.update(bits_per_dim=None, likelihood="no likelihood")
    return row


def table(rows: dict) -> list[str]:
    head = ["family", "budget", "steps", "test bits/dim", "FD", "KID x100", "precision", "recall", "density",
            "coverage", "memorization"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for family, r in rows.items():
        m, se = r["sample_metrics"], r["sample_metrics"]["stderr"]
        bits = "no likelihood" if r.get("bits_per_dim") is None else \
            f"{r['bits_per_dim']:.3f} +- {r['stderr']:.3f} ({r['estimator']})"
        cells = [family, f"{r['minutes_budget']:g} min", str(r["steps"]), bits,
                 f"{m['frechet_distance']:.2f} +- {se['frechet_distance']:.2f}",
                 f"{100 * m['kid']['mean']:.2f} +- {100 * m['kid']['stderr']:.2f}"]
        cells += [f"{m[k]:.3f} +- {se[k]:.3f}" for k in PRDC]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        first = next(iter(rows.values()))["sample_metrics"]
        lines.append(f"\n{first['n_samples']} samples per family against {first['n_reference']} test images; "
                     f"feature net: {first['feature_net']['name']} [{first['feature_net']['hash']}]")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="gan,vae,diffusion,vdm")
    p.add_argument("--minutes", type=float, help="one budget for every family (default: MINUTES)")
    p.add_argument("--samples", type=int, default=360, help="samples per family (default 360 = test size)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default="/tmp/lowerbound-sample-quality", help="where the run directories go")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--table", action="store_true", help="only print the stored table")
    p.add_argument("--skip-done", action="store_true", help="leave out families already stored")
    p.add_argument("--hold-minutes", type=float, default=11.5,
                   help="stop before a family whose budget + 3 minutes of scoring would pass this")
    args = p.parse_args()
    torch.set_num_threads(min(2, args.threads))
    out = Path(args.out)
    stored = json.loads(out.read_text()) if out.is_file() else {"rows": {}}
    start = time.perf_counter()
    if not args.table:
        for family in [f for f in args.families.split(",") if f]:
            minutes = args.minutes if args.minutes is not None else MINUTES.get(family, 5.0)
            if args.skip_done and family in stored["rows"]:
                continue
            if (time.perf_counter() - start) / 60 + minutes + 3 > args.hold_minutes:
                print(f"{family}: left for another run (the lock is held at most {args.hold_minutes:g} min)")
                continue
            print(f"{family}: {minutes:g} minutes; load average {os.getloadavg()}", flush=True)
            stored["rows"][family] = one_family(family, minutes, args.samples, Path(args.root))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(stored, indent=2, default=float) + "\n")
    print("\n".join(table(stored["rows"])))
    print(f"\nload average now {os.getloadavg()}; cpu {cpu_model()}")


if __name__ == "__main__":
    main()
