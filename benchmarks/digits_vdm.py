"""digits-bpd for the continuous-time VDM (benchmarks.md; Kingma et al. 2021): the test bound in
bits/dim with its three terms (prior, diffusion, reconstruction), estimated by Monte Carlo over t.

Protocol: scikit-learn's digits (17 levels), the fixed 1437 / 360 split; a validation tenth held
out of train selects the weights (the training runtime's early stopping on the EMA weights'
validation bound, vdm-mc-k=bound_samples); a fixed wall-clock budget of training (evaluations
included) through `lowerbound compare` and its Trainer (no private loop); then the test bound with
256 draws of (t, eps) per image, with two standard errors: over the 360 images (the usual one, data
and Monte Carlo noise together) and of the Monte Carlo noise alone.
References: EM mixture of 20 categorical products 2.21; diffusers DDPM (L_simple, 5 min) 3.13.

    python benchmarks/digits_vdm.py [--minutes 10] [--threads 1] [--set fourier=[3] --set dropout=0.2]

Writes benchmarks/results/digits_vdm.json.  The machine is shared: throughput numbers are pessimistic.
"""

from __future__ import annotations

import torch

import lowerbound
from common import Entry, estimate, facts, machine, options, parser, run, write

DEFAULTS = {"dropout": 0.1, "bound_samples": 8}  # net "auto": the UNet on 8x8 images
LOOP = {"lr": 2e-3, "batch_size": 128, "ema_decay": 0.999, "eval_every": 100}  # schedule: 10x lr
TEST_K = 256


def schedule_summary(model) -> dict:
    with torch.no_grad():
        g0, g1 = model.schedule.endpoints()
        mid, _ = model.schedule(torch.tensor([0.25, 0.5, 0.75]))
    return {"gamma_0": round(g0.item(), 3), "gamma_1": round(g1.item(), 3),
            "gamma_at_quarters": [round(v, 3) for v in mid.tolist()]}


def main(argv=None) -> dict:
    args = parser(__doc__, 10.0, "digits_vdm").parse_args(argv)
    model_options = {**DEFAULTS, **options(args.set)}
    entry = Entry("vdm", "vdm", {**LOOP, "model": model_options})
    out = run("digits_vdm", [entry], args, tight_samples=TEST_K)
    r = out["by_name"]["vdm"]
    result = {
        "benchmark": "digits-bpd", "family": "vdm", "options": model_options, "loop": LOOP,
        "parameters": r["parameters"], "train": facts(r),
        "test": estimate(r["tight"]), "test_default_estimator": estimate(r),
        "schedule": schedule_summary(lowerbound.load(r["run_dir"])), "sample_metrics": r["sample_metrics"],
        "run_dir": r["run_dir"], "budget_minutes": args.minutes, "seconds": out["seconds"],
        "machine": machine(args.threads),
        "references": {"em_mixture_20": 2.21, "diffusers_ddpm_l_simple_5min": 3.13},
    }
    write(args.json, result)
    return result


if __name__ == "__main__":
    main()
