"""The full DDPM bound (all T steps) on the digits test set: this tree's code against an earlier
revision's, timed on the same run directory, interleaved (before, after, before, after, ...) in child
processes, with the per-example terms compared to 1e-6 relative.

    python benchmarks/ddpm_scoring_speed.py --run-dir runs/diffusion-digits [--before REV] [--repeats 3]

Without --run-dir a default digits DDPM is trained for a few steps through the runtime (the speed of
scoring does not depend on how well the net is trained; the numbers it compares are its own).
Prints a table and writes benchmarks/results/ddpm_scoring_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "df6aa7c"  # main just before issue 16's scoring changes

CHILD = r"""
import json, sys, time, torch
import lowerbound
from lowerbound.data import load
torch.set_num_threads(int(sys.argv[4]))
model = lowerbound.load(sys.argv[1]).eval()
x = load("digits").test[: int(sys.argv[2])]
with torch.no_grad():
    t0 = time.perf_counter()
    b = model.bound(x, estimator="full", generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
torch.save({**b.terms, "variance": b.variance}, sys.argv[3])
print(json.dumps({"seconds": seconds, "estimator": b.estimator,
                  "bpd": float(b.bits_per_dim().mean())}))
"""




def export_tree(rev: str, into: Path) -> Path:
    """The src/ folder of revision rev, unpacked under `into`."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def ensure_run(run_dir: Path | None, scratch: Path) -> Path:
    if run_dir is not None:
        return run_dir
    run_dir = scratch / "ddpm"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "lowerbound", "train", "diffusion", "--data", "digits", "--steps",
                    "60", "--eval-every", "30", "--run-dir", str(run_dir), "--json"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return run_dir


def one(src: Path, run_dir: Path, n: int, out: Path, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), str(n), str(out), str(threads)],
                          check=True, env=env, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_relative(a: dict, b: dict) -> dict:
    return {k: float(((a[k] - b[k]).abs() / a[k].abs().clamp_min(1e-300)).max()) for k in a
            if a[k] is not None}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path)
    ap.add_argument("--before", default=BEFORE, help=f"revision to compare against (default {BEFORE})")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=360, help="test images (default: all 360)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ddpm_scoring_speed.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        trees = {"before": export_tree(args.before, scratch), "after": ROOT / "src"}
        run_dir = ensure_run(args.run_dir, scratch)
        times: dict[str, list[float]] = {"before": [], "after": []}
        info = {}
        for r in range(args.repeats):
            for name, src in trees.items():
                res = one(src, run_dir, args.n, scratch / f"{name}.pt", args.threads)
                times[name].append(res["seconds"])
                info[name] = res
                print(f"repeat {r + 1} {name}: {res['seconds']:.2f} s, {res['bpd']:.6f} bits/dim "
                      f"({res['estimator']})", flush=True)
        diff = max_relative(torch.load(scratch / "before.pt"), torch.load(scratch / "after.pt"))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"task": "full DDPM bound (vlb, all T steps) on the digits test set", "n": args.n,
              "run_dir": str(run_dir) if args.run_dir else "trained 60 steps (defaults)",
              "before": args.before, "seconds": times, "median_seconds": med,
              "speedup": med["before"] / med["after"], "bits_per_dim": info["after"]["bpd"],
              "estimator": info["after"]["estimator"], "max_relative_difference": diff,
              "threads": args.threads, "cpu": cpu_model(), "load_average": os.getloadavg()}
    print(f"\n| code | median s ({args.repeats} runs) | bits/dim |\n| --- | --- | --- |")
    for k in ("before", "after"):
        print(f"| {k} | {med[k]:.2f} | {info[k]['bpd']:.6f} |")
    print(f"speedup {result['speedup']:.2f}x; max relative difference of the terms "
          f"{max(diff.values()):.1e}; CPU {result['cpu']}, load average {result['load_average']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
