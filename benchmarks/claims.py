"""Paper claims in miniature: small, repeatable comparisons with the paper's claim beside our
measurement and whether it held.  Everything trained goes through `lowerbound compare` (the one
training loop); everything scored goes through `lowerbound.eval.likelihood` on the test split.

1. Ho et al. 2020 (DDPM), Table 2: with fixed variances, training on the true variational bound L
   gives a better NLL bound than the simplified L_simple (3.70 vs 3.75 bits/dim on CIFAR-10).
2. Nichol & Dhariwal 2021 (Improved DDPM), Tables 1-2: the cosine noise schedule and learned
   variances (trained with L_hybrid) tighten the bound compared with the linear schedule and with
   L_simple's fixed variances.
3. Burda et al. 2016 (IWAE): the k-sample bound tightens as k grows, and since
   log p(x) - ELBO = KL(q || p(z|x)), the gap IWAE_k - ELBO tends to that KL as k grows.  Checked on
   prob.reference.LinearGaussian, whose posterior and evidence are exact, and on a VAE on digits.
4. Kingma et al. 2021 (VDM), sec. 5.1: the continuous-time bound depends on the noise schedule only
   through its endpoints gamma(0), gamma(1); the schedule in between changes only the Monte Carlo
   variance.  Checked by scoring one trained VDM under its learned schedule and under the linear
   schedule between the same endpoints, paired on the same test points.

"A < B held" means B - A exceeds twice its standard error; within two standard errors it is
"inconclusive" (more budget or seeds would decide).  Budgets are a minute or less per model on a
shared 2-core CPU: these are miniatures of the papers' claims, not reproductions of their numbers.

    python benchmarks/claims.py [--minutes 0.6] [--only ddpm,iwae,vdm]

Writes benchmarks/results/claims.json and prints the table.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributions as D

import lowerbound
from common import Entry, machine, parser, run, write
from lowerbound import data
from lowerbound.eval import likelihood
from lowerbound.nets.monotone import MonotoneSchedule
from lowerbound.prob import LinearGaussian, elbo, iwae_bound, kl_divergence

DDPM = {"timesteps": 200, "timestep_sampling": "uniform"}  # T = 200 keeps the full test bound cheap
DDPM_ENTRIES = {
    "simple-fixed-cosine": {"loss": "simple", "variance": "fixed_large", "schedule": "cosine"},
    "vlb-fixed-cosine": {"loss": "vlb", "variance": "fixed_large", "schedule": "cosine"},
    "hybrid-learned-cosine": {"loss": "hybrid", "variance": "learned_range", "schedule": "cosine"},
    "hybrid-learned-linear": {"loss": "hybrid", "variance": "learned_range", "schedule": "linear"},
}


def verdict(smaller: tuple[float, float], larger: tuple[float, float]) -> tuple[str, float, float]:
    """Is smaller[0] < larger[0]?  (held | inconclusive | contradicted, difference, its stderr)."""
    diff, se = larger[0] - smaller[0], math.hypot(smaller[1], larger[1])
    return ("held" if diff > 2 * se else "contradicted" if diff < -2 * se else "inconclusive"), diff, se


def claim(paper: str, claimed: str, measured: str, held: str, **numbers) -> dict:
    return {"paper": paper, "claim": claimed, "measured": measured, "held": held, "numbers": numbers}


def ddpm_claims(args) -> list[dict]:
    entries = [Entry(n, "diffusion", {"model": {**DDPM, **o}}) for n, o in DDPM_ENTRIES.items()]
    r = run("claims_ddpm", entries, args)["by_name"]
    v = {n: (r[n]["value"], r[n]["stderr"]) for n in DDPM_ENTRIES}
    out = []
    for paper, claimed, a, b in (
            ("Ho et al. 2020", "with fixed variances, L_vlb gives a tighter bound than L_simple",
             "vlb-fixed-cosine", "simple-fixed-cosine"),
            ("Nichol & Dhariwal 2021", "the cosine schedule tightens the bound (vs linear)",
             "hybrid-learned-cosine", "hybrid-learned-linear"),
            ("Nichol & Dhariwal 2021", "learned variances (L_hybrid) tighten the bound (vs L_simple, fixed)",
             "hybrid-learned-cosine", "simple-fixed-cosine")):
        held, diff, se = verdict(v[a], v[b])
        out.append(claim(paper, claimed, f"{a} {v[a][0]:.3f} ± {v[a][1]:.3f} vs {b} {v[b][0]:.3f} ± "
                         f"{v[b][1]:.3f} bits/dim (full vlb, T=200); difference {diff:.3f} ± {se:.3f}",
                         held, **{a: r[a], b: r[b]}))
    return out


def iwae_reference(seed: int = 0) -> dict:
    """LinearGaussian: exact log p(x) and posterior; q = the posterior shifted and widened."""
    g = torch.Generator().manual_seed(seed)
    model = LinearGaussian.random(latent_dim=2, data_dim=5, generator=g)
    _, x = model.sample(8, generator=g)
    post = model.posterior(x)
    q = D.MultivariateNormal(post.mean + 0.5 * post.stddev, scale_tril=1.3 * post.scale_tril)
    kl = kl_divergence(q, post)  # [8] nats, closed form
    joint = lambda z: model.log_joint(x, z)  # noqa: E731
    e = elbo(joint, q, num_samples=200_000, generator=g)
    ks = (1, 10, 100, 1000, 10000)
    bounds = [iwae_bound(joint, q, k, num_samples=64 if k < 10000 else 8, generator=g) for k in ks]
    gaps = [(b.value - e.value).mean().item() for b in bounds]
    gap_se = [math.sqrt(float((b.stderr ** 2 + e.stderr ** 2).mean() / len(x))) for b in bounds]
    increasing = all(b2.value.mean() > b1.value.mean() for b1, b2 in zip(bounds, bounds[1:]))
    exact_gap = (model.log_evidence(x) - e.value).mean().item()
    kl_mean = kl.value.mean().item()
    held = increasing and abs(exact_gap - kl_mean) < 3 * gap_se[0] + 1e-3 and gaps[-1] > 0.9 * kl_mean
    return claim("Burda et al. 2016", "IWAE-k tightens with k; ELBO - IWAE_k tends to KL(q || posterior)",
                 "LinearGaussian (d=2, D=5, 8 points): IWAE_k - ELBO = "
                 + ", ".join(f"{g_:.3f}" for g_ in gaps) + f" nats for k = {', '.join(map(str, ks))}; "
                 f"KL(q || posterior) = {kl_mean:.3f} (closed form); log p(x) - ELBO = {exact_gap:.3f}",
                 "held" if held else "contradicted", ks=list(ks), gaps=gaps, gap_stderr=gap_se,
                 kl=kl_mean, log_evidence_minus_elbo=exact_gap)


def iwae_vae(args) -> dict:
    """A small VAE on digits: the test bound under IWAE-k for growing k, paired on the same images."""
    entry = Entry("vae", "vae", {"model": {"hidden": [256], "latent_dim": 16}})
    r = run("claims_vae", [entry], args, tight_samples=10)["by_name"]["vae"]
    model, ds = lowerbound.load(r["run_dir"]), data.load("digits")
    ks = (1, 10, 100, 1000)
    res = [likelihood(model, ds, estimator="iwae", samples=k, seed=k, progress=False) for k in ks]
    scale = 1.0 / (ds.dims * math.log(2))
    steps = []
    for a, b in zip(res, res[1:]):
        d = (a.per_example - b.per_example) * scale
        steps.append((d.mean().item(), (d.std() / math.sqrt(len(d))).item()))
    held = all(m > 2 * s for m, s in steps)
    return claim("Burda et al. 2016", "IWAE-k tightens as k grows (a VAE on digits)",
                 "test bits/dim " + ", ".join(f"k={k}: {x.value:.4f}" for k, x in zip(ks, res))
                 + "; paired steps " + ", ".join(f"{m:.4f} ± {s:.4f}" for m, s in steps),
                 "held" if held else "inconclusive", ks=list(ks), values=[x.value for x in res],
                 stderr=[x.stderr for x in res], paired_steps=steps)


def vdm_invariance(args, samples: int = 256) -> dict:
    opts = {"n_train": 5000, "n_test": 2000}
    entry = Entry("vdm", "vdm", {"model": {"width": 128, "depth": 3, "scale": 2.0}, "batch_size": 512,
                                 "lr": 3e-3, "eval_batch_size": 1000})
    r = run("claims_vdm", [entry], args, data="toy2d:8gaussians", data_options=opts)["by_name"]["vdm"]
    model, ds = lowerbound.load(r["run_dir"]), data.load("toy2d:8gaussians", **opts)
    learned = likelihood(model, ds, samples=samples, seed=1, progress=False, batch_size=1000)
    with torch.no_grad():
        g0, g1 = (v.item() for v in model.schedule.endpoints())
    model.schedule = MonotoneSchedule(g0, g1, kind="linear")  # same endpoints, straight in between
    linear = likelihood(model, ds, samples=samples, seed=2, progress=False, batch_size=1000)
    d = learned.per_example - linear.per_example
    mean, se = d.mean().item(), (d.std() / math.sqrt(len(d))).item()
    held = abs(mean) < 3 * se
    return claim("Kingma et al. 2021", "the bound depends on the schedule only through its endpoints",
                 f"toy2d 8 gaussians, one trained VDM, {samples} draws of t per point: learned schedule "
                 f"{learned.value:.4f} ± {learned.stderr:.4f} nats (Monte Carlo part ± "
                 f"{learned.estimator_stderr:.4f}), linear schedule {linear.value:.4f} ± "
                 f"{linear.stderr:.4f} (Monte Carlo part ± {linear.estimator_stderr:.4f}); paired "
                 f"difference {mean:.4f} ± {se:.4f}",
                 "held" if held else "contradicted", gamma_0=g0, gamma_1=g1, learned=learned.value,
                 linear=linear.value, paired_difference=mean, paired_stderr=se,
                 mc_stderr_learned=learned.estimator_stderr, mc_stderr_linear=linear.estimator_stderr)


def main(argv=None) -> dict:
    ap = parser(__doc__, 0.6, "claims")
    ap.add_argument("--only", default="ddpm,iwae,vdm", help="which claims: ddpm, iwae, vdm")
    args = ap.parse_args(argv)
    only, start, claims = set(args.only.split(",")), time.perf_counter(), []
    if "ddpm" in only:
        claims += ddpm_claims(args)
    if "iwae" in only:
        claims += [iwae_reference(), iwae_vae(args)]
    if "vdm" in only:
        claims.append(vdm_invariance(args))
    print("| paper | claim | measured | held |\n| --- | --- | --- | --- |")
    for c in claims:
        print(f"| {c['paper']} | {c['claim']} | {c['measured']} | {c['held']} |")
    result = {"claims": claims, "budget_minutes": args.minutes, "machine": machine(args.threads),
              "seconds": round(time.perf_counter() - start, 1)}
    write(args.json, result)
    return result


if __name__ == "__main__":
    main()
