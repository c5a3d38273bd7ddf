"""Low-noise Monte Carlo bounds of the diffusion families (issue 16; models/diffusion/importance.py):
the estimator's own standard error on the digits test set, and its wall time.

For the default digits DDPM: "mc" (t uniform on 2..T, Ho et al. 2020) against "is" (t importance-sampled
in proportion to sqrt(E[L_t^2]) and stratified, Nichol & Dhariwal 2021 sec. 3.3), with the proposal from
a pilot on the test batch (default) or from the training sampler's history.  For the default VDM: "mc"
(t uniform) against "lds" (randomly shifted lattices in t, Kingma et al. 2021 App. I.1).  Goal of the
issue: the estimator's own stderr at most 0.005 bits/dim on the 360 test images in under 60 s.
The models are trained for --minutes through `lowerbound compare`, or taken from --ddpm-run / --vdm-run.

    flock /work/bench.lock python benchmarks/diffusion_mc_noise.py [--minutes 2] [--ddpm-run DIR]

Writes benchmarks/results/diffusion_mc_noise.json.  The machine is shared: wall times are pessimistic.
"""

from __future__ import annotations

import time

from common import Entry, machine, parser, run, write
from lowerbound.train.inspect import evaluate_run

# mc's stderr at other k is its k = 16 value times sqrt(16 / k): t draws are independent
DDPM = [("mc", 16, None), ("is", 16, None), ("is", 16, {"proposal": "history"}), ("is", 64, None),
        ("is", 128, None)]
VDM = [("mc", 16, None), ("lds", 16, None), ("lds", 48, None)]


def score(run_dir: str, estimator: str, samples: int, options: dict | None) -> dict:
    """One test-set evaluation: bits/dim, stderr over images, the estimator's own stderr, seconds."""
    t0 = time.perf_counter()
    r = evaluate_run(run_dir, "test", estimator=estimator, samples=samples, options=options, progress=False,
                     seed=1)
    return {"estimator": r["estimator"], "options": options or {}, "bits_per_dim": r["bits_per_dim"],
            "stderr": r["stderr"], "estimator_stderr": r["estimator_stderr"],
            "seconds": round(time.perf_counter() - t0, 1)}


def table(result: dict) -> str:
    rows = ["| model | estimator | options | test bits/dim | stderr (images) | estimator's stderr | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("ddpm", "vdm"):
        for r in result.get(name, {}).get("scores", []):
            rows.append(f"| {name} | {r['estimator']} | {r['options'] or ''} | {r['bits_per_dim']:.4f} | "
                        f"{r['stderr']:.4f} | {r['estimator_stderr']:.4f} | {r['seconds']} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    ap = parser(__doc__, 2.0, "diffusion_mc_noise")
    ap.add_argument("--ddpm-run", default=None, help="a trained digits diffusion run directory")
    ap.add_argument("--vdm-run", default=None, help="a trained digits vdm run directory")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    runs = {"ddpm": args.ddpm_run, "vdm": args.vdm_run}
    missing = [Entry(n, {"ddpm": "diffusion", "vdm": "vdm"}[n], {}) for n, d in runs.items() if d is None]
    trained = {}
    if missing:
        out = run("diffusion_mc_noise", missing, args)
        trained = {e.name: out["by_name"][e.name] for e in missing}
        runs.update({n: r["run_dir"] for n, r in trained.items()})
    result: dict = {"benchmark": "digits test set, the diffusion bounds' own Monte Carlo stderr",
                    "goal": "estimator stderr <= 0.005 bits/dim in under 60 s"}
    for name, plan in (("ddpm", DDPM), ("vdm", VDM)):
        scores = []
        for estimator, samples, opts in plan:
            scores.append(score(runs[name], estimator, samples, opts))
            print(name, scores[-1], flush=True)
        result[name] = {"run_dir": runs[name], "scores": scores,
                        "train": {k: trained[name][k] for k in ("steps", "wall_seconds")} if name in trained
                        else "given by --" + name + "-run"}
    result["machine"] = machine(args.threads)
    print(table(result))
    print(result["machine"])
    write(args.json, result)
    return result


if __name__ == "__main__":
    main()
