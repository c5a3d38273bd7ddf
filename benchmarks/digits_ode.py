"""The probability-flow ODE likelihood beside the variational bound (Song et al. 2021, sec. 4.3;
models/diffusion/ode.py), for the default VDM and DDPM on digits and a VDM on toy2d.

digits (benchmarks.md digits-bpd): the default `vdm` and `diffusion` (DDPM) trained for --minutes each
through `lowerbound compare` (the one training loop), then the test split (360 images) scored by the
family's bound (VLB) and by `eval --estimator ode` with decoder and uniform dequantization: bits/dim,
stderr over images, the Hutchinson share, NFE per solve and wall time.  toy2d (benchmarks.md
toy2d-kl): a VDM on 8 gaussians, KL(p_data || p_model) <= mean(log p_true + bound) by the bound and
by the ODE density (exact trace, D = 2; KL of the flow itself, not a bound on the SDE's).

    flock /work/bench.lock python benchmarks/digits_ode.py [--minutes 3] [--task digits toy2d]

Writes benchmarks/results/digits_ode.json.  The machine is shared: wall times are pessimistic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import Entry, estimate, facts, machine, options, parser, run, write
from lowerbound.errors import UserError
from lowerbound.train.inspect import evaluate_run

TOY = {"width": 128, "depth": 3, "scale": 2.0, "bound_samples": 8}  # as benchmarks/toy2d_kl.py
TOY_LOOP = {"lr": 3e-3, "batch_size": 512, "ema_decay": 0.995, "eval_every": 100}


def ode(run_dir: str, *, probes: int, rtol: float, dequantization: str | None) -> dict:
    """The ODE estimate of a run's test split, or the reason it was refused."""
    opts = {"rtol": rtol, "atol": rtol, **({"dequantization": dequantization} if dequantization else {})}
    t0 = time.perf_counter()
    try:
        r = evaluate_run(run_dir, "test", estimator="ode", samples=probes, options=opts)
    except UserError as e:
        return {"refused": str(e), "seconds": round(time.perf_counter() - t0, 1), "options": opts}
    key = "bits_per_dim" if "bits_per_dim" in r else "nats"
    out = {"estimator": r["estimator"], key: r[key], "stderr": r["stderr"],
           "estimator_stderr": r["estimator_stderr"], "terms": r["terms"],
           "nfe": r["extras"]["nfe"]["value"], "check_gap": r["extras"]["check_gap"],
           "seconds": round(time.perf_counter() - t0, 1), "options": opts, "probes": probes}
    if r.get("kl_to_truth"):
        out["kl_to_truth"] = r["kl_to_truth"]
    return out


def digits(args) -> dict:
    entries = [Entry(n, f, {"model": options(args.set)}) for n, f in (("vdm", "vdm"), ("ddpm", "diffusion"))
               if n in args.models]
    out = run("digits_ode", entries, args)
    result = {}
    for e in entries:
        r = out["by_name"][e.name]
        row = {"family": e.family, "train": facts(r), "parameters": r["parameters"], "vlb": estimate(r),
               "vlb_tight": estimate(r["tight"]) if r.get("tight") else None, "run_dir": r["run_dir"]}
        for deq in args.dequantization:
            row[f"ode_{deq}"] = ode(r["run_dir"], probes=args.probes, rtol=args.rtol, dequantization=deq)
            print(e.name, deq, row[f"ode_{deq}"], flush=True)
        result[e.name] = row
    return result


def toy2d(args) -> dict:
    entry = Entry("vdm", "vdm", {**TOY_LOOP, "model": TOY})
    out = run("toy2d_ode", [entry], args, data="toy2d:8gaussians")
    r = out["by_name"]["vdm"]
    row = {"train": facts(r), "vlb": estimate(r, "nats"), "vlb_kl_to_truth": r.get("kl_to_truth"),
           "run_dir": r["run_dir"]}
    row["ode"] = ode(r["run_dir"], probes=args.probes, rtol=args.rtol, dequantization=None)
    print("toy2d", row, flush=True)
    return row


def table(result: dict) -> str:
    rows = ["| model | estimator | test | stderr | NFE | wall s |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in result.get("digits", {}).items():
        rows.append(f"| {name} | {r['vlb']['estimator']} | {r['vlb']['bits_per_dim']:.4f} | "
                    f"{r['vlb']['stderr']:.4f} | | |")
        for key in (k for k in r if k.startswith("ode_")):
            o = r[key]
            if "refused" in o:
                rows.append(f"| {name} | ode ({key[4:]}) | refused: {o['refused']} | | | {o['seconds']} |")
            else:
                rows.append(f"| {name} | {o['estimator']} ({key[4:]}) | {o['bits_per_dim']:.4f} | "
                            f"{o['stderr']:.4f} | {o['nfe']:.0f} | {o['seconds']} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    ap = parser(__doc__, 3.0, "digits_ode")
    ap.add_argument("--task", nargs="+", default=["digits", "toy2d"], choices=["digits", "toy2d"])
    ap.add_argument("--models", nargs="+", default=["vdm", "ddpm"], choices=["vdm", "ddpm"])
    ap.add_argument("--dequantization", nargs="+", default=["decoder", "uniform"])
    ap.add_argument("--rtol", type=float, default=1e-5, help="rtol = atol of dopri5")
    ap.add_argument("--probes", type=int, default=1, help="Hutchinson probes per solve")
    args = ap.parse_args(argv)
    result: dict = {}
    if "digits" in args.task:
        result["digits"] = digits(args)
    if "toy2d" in args.task:
        result["toy2d"] = toy2d(args)
    path = Path(args.json)
    merged = json.loads(path.read_text()) if path.is_file() else {}  # runs of one task or model add up
    merged.setdefault("digits", {}).update(result.get("digits", {}))
    if "toy2d" in result:
        merged["toy2d"] = result["toy2d"]
    merged.update({"benchmark": "digits-bpd and toy2d-kl, probability-flow ODE against the bound",
                   "budget_minutes": args.minutes, "rtol": args.rtol, "probes": args.probes,
                   f"machine_{'_'.join(args.task + args.models)}": machine(args.threads)})
    result = merged
    print(table(result))
    write(path, result)
    return result


if __name__ == "__main__":
    main()
