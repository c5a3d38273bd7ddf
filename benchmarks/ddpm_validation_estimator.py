"""The DDPM family's validation estimator: "mc" (k uniform steps, the default ("mc", 32)) against "is"
(k stratified importance-sampled steps with the pilot proposal, models/diffusion/importance.py) on
the digits validation split of a trained default model: each estimator's own standard error in
bits/dim (eval.likelihood's estimator_stderr, from Bound.variance), the spread of its value over
seeds, and its seconds, measured interleaved in one process (the order alternating per round), so
that the two can be compared at equal time.

    flock /work/bench.lock python benchmarks/ddpm_validation_estimator.py --run-dir runs/ddpm-valid
    [--train-minutes 1.5] [--rounds 5]

Without a trained run in --run-dir, one is trained first (`lowerbound train diffusion --data digits
--minutes M`, the family's defaults).  Prints a table and writes
benchmarks/results/ddpm_validation_estimator.json with the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lowerbound  # noqa: E402
from lowerbound.eval import likelihood  # noqa: E402
from lowerbound.train.run import load_dataset, metrics_rows, split_train_valid, stored_config  # noqa: E402
from machine_info import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "ddpm_validation_estimator.json"
CONFIGS = [("mc", 32), ("is", 8), ("is", 16), ("is", 24), ("is", 32)]


def ensure_run(run_dir: Path, minutes: float, threads: int) -> None:
    if (run_dir / "model.safetensors").is_file():
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-m", "lowerbound", "train", "diffusion", "--data", "digits", "--minutes",
                    str(minutes), "--run-dir", str(run_dir), "--json"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--train-minutes", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ensure_run(args.run_dir, args.train_minutes, args.threads)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    cfg = stored_config(args.run_dir)
    dataset = load_dataset(cfg)
    _, valid_x = split_train_valid(dataset.train, cfg.valid_fraction, cfg.seed)
    model = lowerbound.load(args.run_dir).eval()
    runs: dict[str, list] = {f"{e}-{k}": [] for e, k in CONFIGS}
    for r in range(args.rounds):
        for est, k in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):
            res = likelihood(model, dataset, "valid", x=valid_x, estimator=est, samples=k, seed=r,
                             batch_size=cfg.eval_batch_size, progress=False)
            runs[f"{est}-{k}"].append((res.value, res.estimator_stderr, res.seconds, res.stderr))
    rows = []
    print(f"{'estimator':<10} {'bits/dim':>9} {'est. stderr':>11} {'sd over seeds':>13} {'seconds':>8}")
    for (est, k), vals in zip(CONFIGS, runs.values()):
        value = statistics.mean(v[0] for v in vals)
        row = {"estimator": est, "k": k, "bits_per_dim_mean": value,
               "estimator_stderr_mean": statistics.mean(v[1] for v in vals),
               "sd_over_seeds": statistics.stdev(v[0] for v in vals) if len(vals) > 1 else None,
               "seconds_median": statistics.median(v[2] for v in vals),
               "stderr_over_examples": statistics.mean(v[3] for v in vals), "values": [v[0] for v in vals]}
        rows.append(row)
        print(f"{est + '-' + str(k):<10} {value:9.4f} {row['estimator_stderr_mean']:11.4f} "
              f"{row['sd_over_seeds'] or 0:13.4f} {row['seconds_median']:8.2f}")
    result = {"benchmark": "ddpm_validation_estimator", "cpu": cpu_model(), "threads": args.threads,
              "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
              "run": {"steps": int(metrics_rows(args.run_dir)[-1]["step"]),
                      "train_minutes": args.train_minutes, "valid_examples": len(valid_x)},
              "rounds": args.rounds, "rows": rows,
              "note": "estimator_stderr: the estimator's own share of the error (sqrt(sum_i var_i) / n), "
                      "from its Bound.variance; sd_over_seeds: the spread of the value over the seeds "
                      "0..R-1; seconds: one pass over the validation split"}
    print(f"CPU {result['cpu']}, {args.threads} threads, load average {load_before[0]:.2f} before, "
          f"{result['load_average_after'][0]:.2f} after; {len(valid_x)} validation examples")
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
