"""digits-bpd for the discrete-time diffusion model: L_simple vs the bound (vlb) vs hybrid, side by side.

benchmarks.md protocol: scikit-learn digits as 17 levels, the fixed 1437 / 360 split; a validation
split of 10% comes out of train (default_rng(1)) and is the only thing model selection looks at.
Each configuration trains for a fixed wall-clock budget with its own small loop (Adam, EMA of the
weights, early stopping on the validation bound, estimated by Monte Carlo over t with common random
numbers), then the best EMA weights are scored on the test set by the full bound (every step) with
its terms, plus the MC estimator with its standard error.  Writes benchmarks/results/digits_diffusion.json.

    python benchmarks/digits_diffusion.py --minutes 4 --configs vlb            # the best found: 2.07
    python benchmarks/digits_diffusion.py --parameterization eps --schedule linear --dropout 0.1

Each run's options and arguments are stored beside its numbers in the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lowerbound.data import load
from lowerbound.models import registry
from lowerbound.sample import ancestral, ddim

CONFIGS = {
    "simple": {"loss": "simple", "variance": "fixed_large"},
    "vlb": {"loss": "vlb", "variance": "learned_range", "timestep_sampling": "importance"},
    "hybrid": {"loss": "hybrid", "variance": "learned_range"},
}


def bits(nats: torch.Tensor, dims: int) -> float:
    return float(nats.mean()) / (dims * math.log(2))


@torch.no_grad()
def mc_bound(model, x, k, seed):
    """Mean MC bound in bits/dim with common random numbers (same seed every call)."""
    model.eval()
    b = model.bound(x, estimator="mc", samples=k, generator=torch.Generator().manual_seed(seed))
    model.train()
    return bits(b.nats, model.dims), b


def train_one(name, options, data, train, valid, args):
    torch.manual_seed(args.seed)
    model = registry.build("diffusion", options, data.levels, data.shape)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    best = (math.inf, None, 0)
    history, step, seen, t0, next_eval = [], 0, 0, time.time(), 0.0
    budget = args.minutes * 60
    while True:
        elapsed = time.time() - t0
        if elapsed >= next_eval or elapsed >= budget:
            v, _ = mc_bound(ema, valid, args.valid_k, seed=123)
            history.append({"step": step, "seconds": round(elapsed, 1), "valid_bpd_mc": round(v, 4)})
            print(f"  [{name}] step {step:5d}  {elapsed:6.0f}s  valid {v:.4f} bits/dim (mc-k={args.valid_k})",
                  file=sys.stderr)
            if v < best[0]:
                best = (v, copy.deepcopy(ema.state_dict()), step)
            next_eval = elapsed + args.eval_every
            if elapsed >= budget:
                break
        idx = torch.randint(0, len(train), (args.batch,), generator=g)
        loss = model.loss(train[idx], generator=g)
        value = loss.mean()
        if not torch.isfinite(value):
            raise FloatingPointError(f"non-finite loss at step {step}: "
                                     f"{ {k: float(v.mean()) for k, v in loss.terms.items()} }")
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += args.batch
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
    train_seconds = time.time() - t0
    ema.load_state_dict(best[1])
    return ema, {"steps": step, "train_seconds": round(train_seconds, 1),
                 "examples_per_second": round(seen / train_seconds, 1), "best_step": best[2],
                 "best_valid_bpd_mc": round(best[0], 4), "history": history}


@torch.no_grad()
def evaluate(model, test, args):
    model.eval()
    t = time.time()
    full = model.bound(test, estimator="full", generator=torch.Generator().manual_seed(7))
    full_seconds = time.time() - t
    t = time.time()
    mc = model.bound(test, estimator="mc", samples=args.test_k, generator=torch.Generator().manual_seed(8))
    mc_seconds = time.time() - t
    d, n = model.dims, len(test)
    per_example_bits = full.nats / (d * math.log(2))
    mc_bits = mc.nats / (d * math.log(2))
    # stderr over the test examples (data sampling) and, for mc, plus its own t-sampling variance
    mc_var_bits = mc.variance.mean() / (d * math.log(2)) ** 2 / n
    return {
        "estimator": full.estimator,
        "test_bpd": round(float(per_example_bits.mean()), 4),
        "test_bpd_stderr_over_examples": round(float(per_example_bits.std() / math.sqrt(n)), 4),
        "terms_bpd": {k: round(float(v.mean()), 4) for k, v in full.term_bits_per_dim().items()},
        "full_bound_seconds": round(full_seconds, 1),
        "mc": {"estimator": mc.estimator, "test_bpd": round(float(mc_bits.mean()), 4),
               "stderr_from_t_sampling": round(float(mc_var_bits.sqrt()), 4),
               "seconds": round(mc_seconds, 1)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--minutes", type=float, default=3.0, help="training wall-clock per configuration")
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--schedule", default="cosine", choices=["linear", "cosine"])
    p.add_argument("--parameterization", default="categorical", choices=["eps", "x0", "v", "categorical"])
    p.add_argument("--net", default="mlp", choices=["mlp", "unet"],
                   help="mlp: TimeMLP on the flattened 8x8 image (about 12x the UNet's throughput here)")
    p.add_argument("--channels", type=int, default=16, help="UNet base width")
    p.add_argument("--width", type=int, default=256, help="TimeMLP width")
    p.add_argument("--depth", type=int, default=2, help="TimeMLP residual blocks")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--eval-every", type=float, default=15.0, help="seconds between validation checks")
    p.add_argument("--valid-k", type=int, default=32)
    p.add_argument("--test-k", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", action="store_true", help="also time 64 samples, ancestral and DDIM-50")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "digits_diffusion.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    data = load("digits")
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(data.train)))
    n_valid = len(data.train) // 10
    valid, train = data.train[perm[:n_valid]], data.train[perm[n_valid:]]
    results = {"benchmark": "digits-bpd", "machine": f"{platform.machine()}, {args.threads} thread(s), "
               "CPU shared with other engineers' jobs (timings pessimistic)",
               "args": vars(args),
               "split": f"train {len(train)} / valid {len(valid)} / test {len(data.test)}",
               "runs": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.configs:
        net = ({"unet": {"channels": args.channels, "dropout": args.dropout}} if args.net == "unet" else
               {"mlp": {"width": args.width, "depth": args.depth, "dropout": args.dropout}})
        options = dict(CONFIGS[name], net=args.net, timesteps=args.timesteps, schedule=args.schedule,
                       parameterization=args.parameterization, **net)
        print(f"{name}: {options}", file=sys.stderr)
        model, info = train_one(name, options, data, train, valid, args)
        info["options"] = options
        info["args"] = {k: v for k, v in vars(args).items() if k not in ("configs", "out")}
        info["parameters"] = sum(p.numel() for p in model.net.parameters())
        info.update(evaluate(model, data.test, args))
        if args.samples:
            for label, fn, kw in (("ancestral", ancestral, {}), ("ddim50", ddim, {"steps": 50})):
                t = time.time()
                fn(model, 64, progress=False, **kw)
                info[f"sample64_{label}_seconds"] = round(time.time() - t, 2)
        results["runs"][f"{name}-{args.parameterization}-T={args.timesteps}"] = info
        out.write_text(json.dumps(results, indent=2))
        print(f"{name}: test {info['test_bpd']:.4f} bits/dim ({info['estimator']}) terms {info['terms_bpd']}",
              file=sys.stderr)

    print(f"\n| config | test bits/dim ({args.timesteps} steps, full) | prior | diffusion | reconstruction "
          "| mc estimate | steps | ex/s | params |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results["runs"].items():
        t = r["terms_bpd"]
        print(f"| {name} | {r['test_bpd']:.3f} +- {r['test_bpd_stderr_over_examples']:.3f} "
              f"| {t['prior']:.4f} | {t['diffusion']:.3f} | {t['reconstruction']:.4f} "
              f"| {r['mc']['test_bpd']:.3f} +- "
              f"{r['mc']['stderr_from_t_sampling']:.3f} | {r['steps']} | {r['examples_per_second']:.0f} "
              f"| {r['parameters']} |")


if __name__ == "__main__":
    main()
