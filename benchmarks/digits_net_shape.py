"""digits-bpd at a fixed number of steps: which net shape and recipe buys the most bits/dim per step.

Issue 16 asks for a net shaped for 8x8 inputs and for the VDM and DDPM families' 5-minute budgets.
A budget's result is (bits/dim after n steps) at (n = budget x steps per second): this script measures
the first factor, per configuration, on any device (steps do not depend on the device, only seconds
do), and benchmarks/train_step_knobs.py and the CPU runs measure the second.  Each configuration is one
`lowerbound train` run of --steps steps (the CLI's defaults otherwise: batch 128, EMA, validation every
100 steps on a tenth of train, patience 10), run as parallel subprocesses; selection reads the
validation curve only, and the test bound printed beside it is for reporting.

    python benchmarks/digits_net_shape.py --family vdm --steps 4000 --device cuda --jobs 12
    python benchmarks/digits_net_shape.py --family diffusion --steps 4000 --device cuda --jobs 6
    python benchmarks/digits_net_shape.py --family vdm --only base,c16x14 --steps 300 --device cpu

Writes benchmarks/results/digits_net_shape_FAMILY.json (every configuration's validation curve, its
final valid and test bounds with their estimators and standard errors, its parameter count and
examples/s on the device it ran on).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine_info import cpu_model

U = "model.unet."
CONFIGS: dict[str, dict[str, list[str]]] = {
    "vdm": {
        "base": [],
        "noattn": [f"{U}attention_resolutions=[]"],
        "c16x14": [f"{U}channels=16", f"{U}channel_mult=[1,4]"],
        "c16x124": [f"{U}channels=16", f"{U}channel_mult=[1,2,4]"],
        "c32x122": [f"{U}channel_mult=[1,2,2]"],
        "c48": [f"{U}channels=48"],
        "c64flat": [f"{U}channels=64", f"{U}channel_mult=[1]", f"{U}attention_resolutions=[]"],
        "rb2": [f"{U}num_res_blocks=2"],
        "drop01": [f"{U}dropout=0.1"],
        "c64": [f"{U}channels=64"],
        "lr2e-3": ["lr=2e-3"],
        "bf16": ["precision=bf16"],
        "drop01-bf16": [f"{U}dropout=0.1", "precision=bf16"],
        "drop02": [f"{U}dropout=0.2"],
    },
    "diffusion": {
        "mlp": [],
        "unet": ["model.net=unet"],
        "unet-c16x14": ["model.net=unet", f"{U}channels=16", f"{U}channel_mult=[1,4]"],
        "unet-noattn": ["model.net=unet", f"{U}attention_resolutions=[]"],
        "unet-drop0": ["model.net=unet", f"{U}dropout=0.0"],
        "unet-c48": ["model.net=unet", f"{U}channels=48"],
        "unet-bf16": ["model.net=unet", "precision=bf16"],
    },
}


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, validation bits/dim) rows of a run's metrics.csv."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    key = next((k for k in (rows[0] if rows else {}) if k.startswith("valid_")), None)
    return [(int(r["step"]), float(r[key])) for r in rows if key and r.get(key) not in (None, "")]


def from_report(run_dir: Path) -> dict | None:
    """The valid and test rows of a finished run's report.md (for --collect: runs of a stopped sweep)."""
    path = run_dir / "report.md"
    if not path.exists():
        return None
    cells = {}
    for line in path.read_text().splitlines():
        parts = [c.strip() for c in line.strip("|").split("|")]
        if len(parts) > 4 and parts[0] in ("valid", "test"):
            cells[parts[0]] = {"estimator": parts[4].split(" ")[0], "bits_per_dim": float(parts[1]),
                               "stderr": float(parts[2])}
    hist = curve(run_dir)
    return {"steps": hist[-1][0] if hist else None, "examples_per_s": None, **cells} if cells else None


def write(args, results: dict) -> None:
    """The JSON of the runs finished so far (rewritten after each, so a stopped sweep keeps them)."""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = args.device == "cuda" and torch.cuda.is_available()
    device_name = torch.cuda.get_device_name() if cuda else None
    Path(args.out).write_text(json.dumps({
        "benchmark": "digits-bpd at a fixed number of steps (issue 16: net shape and recipe)",
        "family": args.family, "steps": args.steps, "device": args.device, "gpu": device_name,
        "cpu_model": cpu_model(), "common_sets": args.extra, "jobs_in_parallel": args.jobs,
        "threads_per_job": args.threads,
        "torch": torch.__version__, "load_average": os.getloadavg(),
        "note": "examples/s are per job with jobs sharing the device: compare them within this file only",
        "results": results}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=sorted(CONFIGS), default="vdm")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--only", default="", help="comma-separated configuration names")
    p.add_argument("--timeout", type=float, default=1e9, help="seconds before a job is stopped")
    p.add_argument("--set", action="append", default=[], dest="extra",
                   help="an option for every configuration, e.g. model.bound_samples=16")
    p.add_argument("--runs", default="runs/net_shape")
    p.add_argument("--out", default="")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: read the runs already in --runs (e.g. of a stopped sweep)")
    args = p.parse_args()
    args.out = args.out or f"benchmarks/results/digits_net_shape_{args.family}.json"
    configs = CONFIGS[args.family]
    names = [n for n in args.only.split(",") if n] or list(configs)
    unknown = sorted(set(names) - set(configs))
    if unknown:
        sys.exit(f"unknown configurations {unknown}; choose from {sorted(configs)}")
    root = Path(args.runs) / args.family
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    root.mkdir(parents=True, exist_ok=True)
    pending, running, results = ([] if args.collect else list(names)), {}, {}
    for name in names if args.collect else ():
        hist, final = curve(root / name), from_report(root / name)
        best = min(hist, key=lambda r: r[1]) if hist else None
        results[name] = {"sets": configs[name], "collected": True, "valid_curve": hist, "final": final,
                         "best_valid": {"step": best[0], "bits_per_dim": best[1]} if best else None}
    t0 = time.time()
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            run_dir = root / name
            cmd = [sys.executable, "-m", "lowerbound", "train", args.family, "--data", "digits",
                   "--steps", str(args.steps), "--device", args.device, "--run-dir", str(run_dir), "--json"]
            for s in args.extra + configs[name]:
                cmd += ["--set", s]
            log = open(root / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True),
                             time.time())
        time.sleep(1.0)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None and time.time() - start < args.timeout:
                continue
            if proc.poll() is None:
                proc.kill()
            out = proc.communicate()[0]
            del running[name]
            final = json.loads(out) if proc.returncode == 0 and out.strip().startswith("{") else None
            hist = curve(root / name)
            best = min(hist, key=lambda r: r[1]) if hist else None
            results[name] = {
                "sets": configs[name], "returncode": proc.returncode,
                "wall_seconds": round(time.time() - start, 1),
                "best_valid": {"step": best[0], "bits_per_dim": best[1]} if best else None,
                "valid_curve": hist,
                "final": None if final is None else {
                    "steps": final["steps"], "stopped": final["stopped"], "selected": final["selected"],
                    "examples_per_s": final["examples_per_s"],
                    **{split: {"estimator": final["splits"][split]["estimator"],
                               "bits_per_dim": final["splits"][split]["bits_per_dim"],
                               "stderr": final["splits"][split]["stderr"]} for split in ("valid", "test")}}}
            r = results[name]
            f = r["final"] or {}
            write(args, results)
            print(f"{name:12s} rc={proc.returncode} best valid {best} "
                  f"test {f.get('test', {}).get('bits_per_dim', float('nan')):.4f} "
                  f"ex/s {f.get('examples_per_s', 0) or 0:.0f}  ({time.time() - t0:.0f} s)", flush=True)
    rows = sorted(results.items(), key=lambda kv: (kv[1]["best_valid"] or {}).get("bits_per_dim", 99))
    print(f"\n| config | best valid bpd (step) | test bpd +- stderr (estimator) | steps | "
          f"ex/s on {args.device} |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows:
        f, b = r["final"], r["best_valid"]
        test = (f"{f['test']['bits_per_dim']:.4f} +- {f['test']['stderr']:.4f} ({f['test']['estimator']})"
                if f else "-")
        print(f"| {name} | {b['bits_per_dim']:.4f} ({b['step']}) | {test} | {f['steps'] if f else '-'} | "
              f"{(f or {}).get('examples_per_s') or 0:.0f} |" if b else f"| {name} | - | {test} | - | - |")
    write(args, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
