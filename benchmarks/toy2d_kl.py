"""toy2d-kl for the continuous-time VDM (benchmarks.md; Kingma et al. 2021): distance to a known
2-D density, KL(p_data || p_model), estimated on the test points as the paired mean of
log p_true(x) - log p_model(x) with its standard error.

VDM gives no exact log p_model(x), only its ELBO; with it in place of log p_model the paired mean is
an upper bound on the KL: mean(log p_true(x) + bound(x)) >= KL, estimated by Monte Carlo over t
(128 draws per point; the standard error covers data and Monte Carlo noise together).  On
continuous data VDM needs no discretization: its decoder at t = 0 is the Gaussian density
N(x / scale; z_0 / alpha_0, exp(gamma_0)) (see models/diffusion/vdm.py).

Protocol (benchmarks.md): `lowerbound.data.load("toy2d:8gaussians")` (20,000 train, 5,000 test
points), a fixed wall-clock budget (default 2 minutes) through `lowerbound compare` and its Trainer
(no private loop), the EMA weights with the best bound on a tenth of the training points kept.
Peers, 8 gaussians: normflows neural spline flow 0.018 +- 0.001 nats, RealNVP 0.060 +- 0.002,
scikit-learn's Gaussian mixture 0.001.

    python benchmarks/toy2d_kl.py [--data toy2d:8gaussians] [--minutes 2] [--set width=256]

Writes benchmarks/results/toy2d_kl_vdm.json.  The machine is shared: timings are pessimistic.
"""

from __future__ import annotations

import torch

import lowerbound
from common import RESULTS, Entry, estimate, facts, machine, options, parser, run, write
from lowerbound import data

DEFAULTS = {"width": 128, "depth": 3, "scale": 2.0, "bound_samples": 8}
LOOP = {"lr": 3e-3, "batch_size": 512, "ema_decay": 0.995, "eval_every": 100, "eval_batch_size": 1000}
TEST_K = 128


def main(argv=None) -> dict:
    ap = parser(__doc__, 2.0, "toy2d_kl_vdm")
    ap.add_argument("--data", default="toy2d:8gaussians")
    ap.set_defaults(json=str(RESULTS / "toy2d_kl_vdm.json"))
    args = ap.parse_args(argv)
    model_options = {**DEFAULTS, **options(args.set)}
    out = run("toy2d_kl_vdm", [Entry("vdm", "vdm", {**LOOP, "model": model_options})], args, data=args.data,
              tight_samples=TEST_K)
    r = out["by_name"]["vdm"]
    t = r["tight"]
    entropy = data.load(args.data).truth.entropy()
    with torch.no_grad():
        g0, g1 = lowerbound.load(r["run_dir"]).schedule.endpoints()
    result = {
        "benchmark": "toy2d-kl", "data": args.data, "family": "vdm", "options": model_options, "loop": LOOP,
        "parameters": r["parameters"], "train": facts(r), "estimator": t["estimator"],
        "kl_upper_bound_nats": t["value"], "kl_stderr": t["stderr"],
        "test_nll_bound": estimate({**t, **t["bound"]}, key="nats"),
        "default_estimator": {"estimator": r["estimator"], "kl_upper_bound_nats": r["value"],
                              "kl_stderr": r["stderr"]},
        "true_entropy_nats": float(entropy.value), "true_entropy_stderr": float(entropy.stderr),
        "gamma_0": g0.item(), "gamma_1": g1.item(), "run_dir": r["run_dir"], "budget_minutes": args.minutes,
        "seconds": out["seconds"], "machine": machine(args.threads),
        "references": {"normflows_nsf": 0.018, "normflows_realnvp": 0.060, "sklearn_gmm": 0.001},
    }
    write(args.json, result)
    return result


if __name__ == "__main__":
    main()
