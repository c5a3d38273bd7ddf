"""Issue 16's quality budgets, run exactly as a user would: `lowerbound train FAMILY --data digits
--minutes 5` for the VDM and the DDPM family, with nothing but the command-line defaults.

The targets: VDM at most 1.75 bits/dim on test, the DDPM family at most 1.95.  Each run's test bound is
the one `train` prints (VDM: the Monte Carlo bound with its default k; DDPM: the full sum over all
T = 1000 steps), and for the VDM also `lowerbound eval --samples 64` (64 draws of t per example: the
same expectation, less Monte Carlo error).  A time budget measures the machine as much as the code: run
this alone, and read the load average and CPU model printed with the result.

    python benchmarks/diffusion_budget.py                       # both families, 5 minutes each
    python benchmarks/diffusion_budget.py --families vdm --minutes 5 --set precision=fp32

Writes benchmarks/results/diffusion_budget.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine_info import cpu_model

TARGETS = {"vdm": 1.75, "diffusion": 1.95}


def cli(args: list[str], env: dict[str, str] | None = None) -> dict:
    """`lowerbound ARGS --json` in a fresh process (env: its whole environment, default ours)."""
    cmd = [sys.executable, "-m", "lowerbound", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"lowerbound {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="vdm,diffusion")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--set", action="append", default=[], help="an extra --set for every run")
    p.add_argument("--runs", default="runs/benchmarks/diffusion_budget")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "diffusion_budget.json"))
    args = p.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for family in [f for f in args.families.split(",") if f]:
        run_dir = f"{args.runs}/{family}-{stamp}"
        load_before = os.getloadavg()
        t0 = time.time()
        sets = [a for s in args.set for a in ("--set", s)]
        train = cli(["train", family, "--data", "digits", "--minutes", str(args.minutes),
                     "--run-dir", run_dir, *sets])
        wall = time.time() - t0
        test = train["splits"]["test"]
        row = {"command": f"lowerbound train {family} --data digits --minutes {args.minutes:g}"
                          + "".join(f" --set {s}" for s in args.set),
               "steps": train["steps"], "stopped": train["stopped"], "selected": train["selected"],
               "examples_per_s": round(train["examples_per_s"], 1),
               "train_seconds": round(train["train_seconds"], 1),
               "wall_seconds_with_scoring": round(wall, 1),
               "test": {k: test[k] for k in ("estimator", "bits_per_dim", "stderr", "estimator_stderr")},
               "valid": {k: train["splits"]["valid"][k] for k in ("estimator", "bits_per_dim", "stderr")},
               "target": TARGETS.get(family), "load_average_before": load_before,
               "load_average_after": os.getloadavg(), "cpu_model": cpu_model(), "cores": os.cpu_count()}
        if family == "vdm":
            tight = cli(["eval", run_dir, "--samples", "64", "--no-progress"])
            row["test_tight"] = {"estimator": tight["estimator"], "bits_per_dim": tight["bits_per_dim"],
                                 "stderr": tight["stderr"], "estimator_stderr": tight.get("estimator_stderr")}
        results[family] = row
        out.write_text(json.dumps(results, indent=1))
        best = row.get("test_tight", row["test"])
        t = row["test"]
        print(f"{family}: {row['steps']} steps in {row['train_seconds']} s ({row['examples_per_s']} ex/s), "
              f"test {t['bits_per_dim']:.4f} +- {t['stderr']:.4f} ({t['estimator']})"
              + (f", {best['bits_per_dim']:.4f} +- {best['stderr']:.4f} ({best['estimator']})"
                 if family == "vdm" else "")
              + f"; target {row['target']}; load {load_before[0]:.2f} -> {row['load_average_after'][0]:.2f}",
              flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
