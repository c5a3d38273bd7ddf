"""CPU time per training step with and without a competing CPU-bound process (issue 14).

A training run was seen burning 364 s of CPU for 49 s of idle-machine work with 2 threads on 2 busy
cores.  The suspect is OpenMP's spin-waiting: between parallel regions libgomp's threads spin for a
while (OMP_WAIT_POLICY=ACTIVE-like by default) instead of sleeping, and on a busy machine a
spinning thread takes the core that the thread it waits for needs.  This script measures CPU seconds
(user + system, time.process_time of the training process) and wall seconds per training step of
a family on digits (--family, the VAE by default; its defaults), for each setting of the
environment, on an otherwise idle machine and with `--competitors` busy-looping processes beside
it.  Each cell is the median of `--repeats` runs (each in a fresh process, since OpenMP reads its
environment once, when torch loads).

    flock /work/bench.lock python benchmarks/omp_contention.py [--steps 300] [--repeats 3]
        [--competitors 1] [--out benchmarks/results/omp_contention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "default (2 threads)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def child(steps: int, family: str) -> None:
    """Train `family` (defaults) on digits for `steps` steps after a warm-up; print CPU and wall
    seconds as JSON."""
    import dataclasses

    import torch

    from lowerbound.data import load
    from lowerbound.models import registry
    from lowerbound.train import runtime
    from lowerbound.train.config import TrainConfig
    from lowerbound.train.loop import Trainer

    data = load("digits")
    torch.manual_seed(0)
    model = registry.build(family, {}, data.levels, data.shape)
    cfg = TrainConfig(family=family, steps=20, **registry.get(family).train_defaults, eval_every=10**9,
                      checkpoint_every=10**9, patience=0)
    trainer = Trainer(cfg, runtime.setup("cpu"), model, data.train, None, None, progress=False)
    trainer.run()  # warm-up: allocator, first-call costs
    trainer.cfg = dataclasses.replace(cfg, steps=20 + steps)
    c0, t0 = time.process_time(), time.perf_counter()
    trainer.run()
    print(json.dumps({"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0,
                      "threads": torch.get_num_threads()}))


def measure(setting: dict, steps: int, family: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                             "GOMP_SPINCOUNT")}
    env.update(setting)
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps), "--family", family]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--competitors", type=int, default=1)
    p.add_argument("--family", default="vae", help="the family trained (its defaults), e.g. vdm")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results/omp_contention.json")
    args = p.parse_args()
    if args.child:
        return child(args.steps, args.family)
    rows = []
    for busy in (0, args.competitors):
        procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
        try:
            for name, setting in SETTINGS.items():
                runs = [measure(setting, args.steps, args.family) for _ in range(args.repeats)]
                cpu = statistics.median(r["cpu_s"] for r in runs) / args.steps * 1e3
                wall = statistics.median(r["wall_s"] for r in runs) / args.steps * 1e3
                rows.append({"setting": name, "competitors": busy, "threads": runs[0]["threads"],
                             "cpu_ms_per_step": cpu, "wall_ms_per_step": wall,
                             "cpu_over_wall": cpu / wall, "runs": runs, "loadavg": os.getloadavg()})
                print(f"{name:>24} | competitors {busy} | CPU {cpu:7.2f} ms/step | wall {wall:7.2f} ms/step "
                      f"| load {os.getloadavg()[0]:.2f}", flush=True)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    print("\n| setting | competing processes | CPU ms/step | wall ms/step | CPU / wall |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['setting']} | {r['competitors']} | {r['cpu_ms_per_step']:.2f} | "
              f"{r['wall_ms_per_step']:.2f} | {r['cpu_over_wall']:.2f} |")
    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown")
    print(f"cpu: {cpu_name}; {args.steps} steps per run, median of {args.repeats} runs")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"family": args.family, "steps": args.steps, "repeats": args.repeats,
                                          "cpu": cpu_name,
                                          "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
