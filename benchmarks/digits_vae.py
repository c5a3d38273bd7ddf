"""digits-bpd for the VAE (benchmarks.md): test ELBO and IWAE-1000 in bits/dim, categorical decoder.

Protocol: scikit-learn's digits (17 levels), the fixed 1437 / 360 split; a validation tenth held out of
train selects the weights (the training runtime's early stopping on the validation bound, EMA
weights); a fixed wall-clock budget of training (default 5 minutes, evaluations included), through
`lowerbound compare` and its Trainer (no private loop); then the test bound by the ELBO (one draw per
example) and by IWAE-1000, each with the standard error of the mean over the 360 test images.
References: EM mixture of 20 categorical products 2.21; pyro-ppl's MLP VAE stopped early 2.077
(IWAE-1000, ELBO 2.140).

    python benchmarks/digits_vae.py [--minutes 5] [--threads 1] [--set dropout=0.3 --set latent_dim=32]
    python benchmarks/digits_vae.py --speed-vs-pyro     # needs the `bench` extra (pyro-ppl)

Writes benchmarks/results/digits_vae.json (digits_vae_speed.json for the speed comparison: training
steps/s of our loss + Adam against pyro's SVI/Trace_ELBO on the same nets and batch, interleaved
rounds in one process, median of rounds).  The machine is shared: throughput numbers are pessimistic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import lowerbound
from common import Entry, estimate, facts, machine, options, parser, run, write
from lowerbound import data
from lowerbound.models import registry

DEFAULTS = {"architecture": "mlp", "hidden": [512, 256], "latent_dim": 32, "dropout": 0.3}
LOOP = {"batch_size": 64, "lr": 1e-3, "eval_every": 100, "patience": 10}


def speed_vs_pyro(options: dict, batch: int, rounds: int = 5, steps: int = 100) -> dict:
    """Steps/s of one training step, ours against pyro's SVI with Trace_ELBO on identical nets."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    from lowerbound.nets.mlp import MLP
    from lowerbound.prob.units import to_signed

    ds = data.load("digits")
    ours = registry.build("vae", options, ds.levels, ds.shape).train()
    c, k, d = ours.config, ds.levels, ds.dims
    enc = MLP(d, 2 * c.latent_dim, c.hidden, dropout=c.dropout)
    dec = MLP(c.latent_dim, k * d, tuple(reversed(c.hidden)), dropout=c.dropout)

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(torch.zeros(x.shape[0], c.latent_dim), 1.0).to_event(1)
            logits = dec(pyro.sample("z", prior)).view(-1, k, d).transpose(1, 2)
            pyro.sample("x", dist.Categorical(logits=logits).to_event(1), obs=x.reshape(-1, d))

    def guide(x):
        pyro.module("encoder", enc)
        with pyro.plate("data", x.shape[0]):
            mean, log_scale = enc(to_signed(x, k).reshape(-1, d)).chunk(2, -1)
            pyro.sample("z", dist.Normal(mean, log_scale.exp()).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=Trace_ELBO())
    opt = torch.optim.Adam(ours.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)

    def our_step(x):
        loss = ours.loss(x, generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rates: dict[str, list[float]] = {"lowerbound": [], "pyro": []}
    for _ in range(rounds):
        for name, step in (("lowerbound", our_step), ("pyro", svi.step)):
            t = time.perf_counter()
            for i in range(steps):
                step(ds.train[(i * batch) % 1280:(i * batch) % 1280 + batch])
            rates[name].append(steps / (time.perf_counter() - t))
    med = {n: sorted(r)[len(r) // 2] for n, r in rates.items()}
    return {"steps_per_s_median": med, "ratio_ours_over_pyro": med["lowerbound"] / med["pyro"],
            "rounds": rates, "batch_size": batch, "steps_per_round": steps, "options": options,
            "pyro_version": pyro.__version__}


def main(argv=None) -> dict:
    ap = parser(__doc__, 5.0, "digits_vae")
    ap.add_argument("--speed-vs-pyro", action="store_true", help="only the per-step speed comparison")
    args = ap.parse_args(argv)
    model_options = {**DEFAULTS, **options(args.set)}
    if args.speed_vs_pyro:
        torch.set_num_threads(args.threads)
        result = speed_vs_pyro(model_options, LOOP["batch_size"])
        result["machine"] = machine(args.threads)
        print(json.dumps(result["steps_per_s_median"]), f"ratio {result['ratio_ours_over_pyro']:.2f}")
        write(Path(args.json).with_name("digits_vae_speed.json"), result)
        return result
    out = run("digits_vae", [Entry("vae", "vae", {**LOOP, "model": model_options})], args)
    r = out["by_name"]["vae"]
    model = lowerbound.load(r["run_dir"])
    result = {
        "benchmark": "digits-bpd", "family": "vae", "options": model_options, "loop": LOOP,
        "objective": model.config.objective_name, "parameters": r["parameters"],
        "train": facts(r), "test_elbo": estimate(r), "test_iwae": estimate(r["tight"]),
        "active_units": model.diagnostics(data.load("digits").test)["active_units"],
        "sample_metrics": r["sample_metrics"], "run_dir": r["run_dir"], "budget_minutes": args.minutes,
        "seconds": out["seconds"], "machine": machine(args.threads),
        "references": {"em_mixture_20": 2.21, "pyro_vae_early_stopped_iwae_1000": 2.077},
    }
    write(args.json, result)
    return result


if __name__ == "__main__":
    main()
