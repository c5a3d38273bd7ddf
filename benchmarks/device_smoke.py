"""Every family trains, validates, checkpoints and scores on a device, at each precision it offers.

CI has no GPU, so the CUDA paths (device placement, autocast, fp16's GradScaler, the generators on
the device) are checked here, by hand, on a machine that has one:

    python benchmarks/device_smoke.py --device cuda          # every family x fp32, bf16, fp16
    python benchmarks/device_smoke.py --device cuda --cifar   # also the CIFAR-10 configs, on random
                                                              # 32x32x3 data (speed and health only)

Each run is `lowerbound train FAMILY --data digits --steps 20 --eval-every 10` in a subprocess; a row
says whether it finished, its test bound (meaningless after 20 steps: it checks that scoring runs and
is finite) and its examples/s.  The CIFAR rows use configs/*_cifar10.yaml with data replaced by random
levels (no download: the device machine has no network), 30 steps.  Writes
benchmarks/results/device_smoke_DEVICE.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from machine_info import cpu_model

PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}


def run(cmd: list[str], env: dict) -> dict:
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    row = {"cmd": " ".join(cmd[3:]), "returncode": proc.returncode, "seconds": round(time.time() - t0, 1)}
    if proc.returncode == 0 and proc.stdout.strip().startswith("{"):
        out = json.loads(proc.stdout)
        row.update(bits_per_dim=out.get("bits_per_dim"), estimator=out["splits"]["test"]["estimator"]
                   if "splits" in out else None, examples_per_s=out.get("examples_per_s"))
        row["finite"] = row["bits_per_dim"] is not None and math.isfinite(row["bits_per_dim"])
    else:
        row["error"] = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--cifar", action="store_true")
    p.add_argument("--families", default="", help="comma-separated (default: all registered)")
    p.add_argument("--cifar-set", action="append", default=[], help="extra --set for the CIFAR rows "
                   "(e.g. model.width=8 for a quick check of this script on a CPU)")
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--runs", default="runs/device_smoke")
    p.add_argument("--out", default="")
    args = p.parse_args()
    from lowerbound.models import registry

    families = [f for f in args.families.split(",") if f] or registry.names()
    args.runs = f"{args.runs}/{time.strftime('%Y%m%d-%H%M%S')}"  # a fresh folder: never resume or refuse
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "lowerbound", "train"]
    jobs = {}
    for fam in families:
        for prec in PRECISIONS.get(args.device, ("fp32",)):
            jobs[f"{fam}/{prec}"] = base + [fam, "--data", "digits", "--steps", "20", "--eval-every", "10",
                                            "--device", args.device, "--precision", prec, "--run-dir",
                                            f"{args.runs}/{fam}-{prec}", "--json"]
    if args.cifar:
        fake = Path(args.runs) / "fake_cifar.npy"
        fake.parent.mkdir(parents=True, exist_ok=True)
        np.save(fake, np.random.default_rng(0).integers(0, 256, (2048, 3, 32, 32), dtype=np.uint8))
        for cfg in sorted(Path("configs").glob("*_cifar10.yaml")):
            family = next(line.split(":")[1].strip() for line in cfg.read_text().splitlines()
                          if line.startswith("family:"))
            extra = [a for s in args.cifar_set for a in ("--set", s)]
            for prec in ("fp32", "bf16"):
                jobs[f"{cfg.stem}/{prec}"] = base + [
                    family, "--config", str(cfg), *extra, "--set", f"data=npy:{fake}",
                    "--set", "data_options={levels: 256}",
                    "--steps", "30", "--eval-every", "30", "--checkpoint-every", "30",
                    "--set", "eval_batch_size=64", "--device", args.device, "--precision", prec,
                    "--run-dir", f"{args.runs}/{cfg.stem}-{prec}", "--json"]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = dict(zip(jobs, pool.map(lambda c: run(c, env), jobs.values())))
    print("| run | ok | test bound (bits/dim or nats, estimator) | examples/s | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        ok = r["returncode"] == 0 and r.get("finite")
        bound = (f"{r['bits_per_dim']:.3f} ({r['estimator']})" if r.get("bits_per_dim") is not None
                 else r.get("error", ""))
        print(f"| {name} | {'yes' if ok else 'NO'} | {bound} | {r.get('examples_per_s') or 0:.0f} | "
              f"{r['seconds']} |")
    import torch

    out = Path(args.out or f"benchmarks/results/device_smoke_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "every family on a device at each precision (20 steps; health, not quality)",
        "device": args.device, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_model": cpu_model(), "torch": torch.__version__, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
