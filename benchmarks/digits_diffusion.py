"""digits-bpd for the discrete-time diffusion model: L_simple vs the bound (vlb) vs hybrid, side by side.

benchmarks.md protocol: scikit-learn digits as 17 levels, the fixed 1437 / 360 split; a validation
tenth held out of train is the only thing model selection looks at.  Each configuration trains for
a fixed wall-clock budget through `lowerbound compare` and its Trainer (AdamW, EMA of the weights,
early stopping on the validation bound estimated by Monte Carlo over t; no private loop), then the
best EMA weights are scored on the test set by the full bound (every one of the T steps) with its
terms.  The family's defaults (TimeMLP, cosine schedule, categorical parameterization) are kept;
only the objective and the variances differ between configurations.

    python benchmarks/digits_diffusion.py --minutes 4 --configs vlb            # the family's defaults
    python benchmarks/digits_diffusion.py --set timesteps=500

Writes benchmarks/results/digits_diffusion.json; each run's options stand beside its numbers.
"""

from __future__ import annotations

from common import Entry, estimate, facts, machine, options, parser, run, write

CONFIGS = {
    "simple": {"loss": "simple", "variance": "fixed_large", "timestep_sampling": "uniform"},
    "vlb": {"loss": "vlb", "variance": "learned_range", "timestep_sampling": "importance"},
    "hybrid": {"loss": "hybrid", "variance": "learned_range", "timestep_sampling": "uniform"},
}


def main(argv=None) -> dict:
    ap = parser(__doc__, 3.0, "digits_diffusion")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args(argv)
    extra = options(args.set)
    entries = [Entry(name, "diffusion", {"model": {**CONFIGS[name], **extra}}) for name in args.configs]
    out = run("digits_diffusion", entries, args)
    runs = {}
    for name in args.configs:
        r = out["by_name"][name]
        runs[name] = {"options": {**CONFIGS[name], **extra}, "parameters": r["parameters"], **facts(r),
                      "test": estimate(r), "sample_metrics": r["sample_metrics"], "run_dir": r["run_dir"]}
    result = {"benchmark": "digits-bpd (benchmarks.md): test bound in bits/dim, full sum over all T steps",
              "budget_minutes": args.minutes, "runs": runs, "seconds": out["seconds"],
              "machine": machine(args.threads)}
    write(args.json, result)
    return result


if __name__ == "__main__":
    main()
