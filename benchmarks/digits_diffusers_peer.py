"""digits-bpd peer: diffusers' UNet2DModel + DDPMScheduler (L_simple) against our `diffusion` family.

benchmarks.md protocol and issue 5 ("Quality and speed"), two parts:

speed    training steps of the two at an equal parameter count (701,345 each: diffusers' UNet2DModel with
         block_out_channels (32, 64), one attention block at 4x4, against our UNet with channels 32,
         channel_mult (1, 2), attention at 4), both L_simple with eps on the linear schedule, batch 128,
         fp32, one thread, interleaved in blocks in one process; the median examples/s of each and
         their ratio (ours / diffusers').
quality  diffusers' model trained by L_simple (Ho et al. 2020, eq. 14) through DDPMScheduler.add_noise
         for a fixed wall-clock (validation not counted), EMA of the weights, selected on a validation
         tenth of train (default_rng(1)) by our MC bound, then the test split scored by OUR bound
         through `lowerbound.adapters.from_diffusers` (the UNet and the scheduler as they are: eps,
         the scheduler's betas and timesteps s = i - 1; fixed_large variances sigma_t^2 = beta_t).
ours     lowerbound's diffusion family (its defaults, trained on the bound) for the same wall-clock
         through `lowerbound compare` (benchmarks/digits_diffusion.py, config vlb), scored on test
         by its full bound: the same budget for both families.

Timestep alignment: our step i = 1..T has alpha_bar_i = prod_{j<=i} (1 - beta_j) with beta_j the j-th of
linspace(1e-4, 0.02, T); diffusers' timestep s = 0..T-1 has alphas_cumprod[s] = prod_{j<=s+1} of the same
betas, so s = i - 1 (the adapter's time convention "index").  The script checks that the tables agree.

    python benchmarks/digits_diffusers_peer.py --part speed
    python benchmarks/digits_diffusers_peer.py --part quality --minutes 3     # trains, saves the weights
    python benchmarks/digits_diffusers_peer.py --part test --threads 2        # our full bound on test
    python benchmarks/digits_diffusers_peer.py --part test --test-estimator mc --test-k 128   # cheaper
    python benchmarks/digits_diffusers_peer.py --part ours --minutes 3        # our family, same budget

diffusers is the optional `bench` extra (pip install -e .[bench]); it is imported here only, lazily.
The full bound costs 360,000 UNet calls (about 4-7 minutes on this CPU), hence a part of its own.
Each part writes its numbers into benchmarks/results/digits_diffusers_peer.json (the other part's are kept).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lowerbound.adapters import from_diffusers
from lowerbound.data import load
from lowerbound.models import registry
from lowerbound.models.diffusion.ddpm import Diffusion
from lowerbound.prob.units import to_signed
from machine_info import cpu_model

T = 1000


def diffusers_unet(dropout: float) -> nn.Module:
    """The small diffusers UNet for 8x8x1 images: two levels (32, 64), attention at the 4x4 one."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                       layers_per_block=1, norm_num_groups=8, dropout=dropout,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def as_diffusion(unet: nn.Module, chunk: int, clip_x0: bool = False) -> Diffusion:
    """The UNet and its scheduler, adapted: our DDPM bound with fixed_large variances."""
    return from_diffusers(unet, ddpm_scheduler(), levels=17, variance="fixed_large", clip_x0=clip_x0,
                          chunk=chunk)


def check_alignment() -> float:
    """Largest |alpha_bar| difference between diffusers' table at s = i - 1 and ours (linear, T) at i."""
    ours = Diffusion(nn.Identity(), levels=17, shape=(1, 8, 8), timesteps=T).schedule.alpha_bar[1:]
    theirs = ddpm_scheduler().alphas_cumprod.double()
    gap = float((ours - theirs).abs().max())
    if gap > 1e-5:
        raise AssertionError(f"schedules disagree by {gap:.3g}")
    return gap


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def diffusers_step(unet, sched, opt, x0: Tensor, g: torch.Generator) -> float:
    """One L_simple step the diffusers way: add_noise at s ~ U{0..T-1}, mse of eps."""
    s = torch.randint(0, T, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    noisy = sched.add_noise(x0, noise, s)
    loss = torch.nn.functional.mse_loss(unet(noisy, s).sample, noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def our_trainer(train: Tensor, args, **loop):
    """Our diffusion family's Trainer on the net that mirrors diffusers_unet (L_simple, eps, linear
    schedule, dropout args.dropout), in train mode; loop: TrainConfig options beyond the defaults."""
    from lowerbound.train import runtime
    from lowerbound.train.config import TrainConfig
    from lowerbound.train.loop import Trainer

    options = {"net": "unet", "parameterization": "eps", "variance": "fixed_large", "loss": "simple",
               "timestep_sampling": "uniform", "schedule": "linear",
               "unet": {"channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
                        "attention_resolutions": [4], "dropout": args.dropout, "groups": 8}}
    torch.manual_seed(args.seed)
    model = registry.build("diffusion", options, 17, (1, 8, 8))
    cfg = TrainConfig(family="diffusion", batch_size=args.batch, lr=args.lr, grad_clip=1.0,
                      ema_decay=args.ema, steps=10**9, **loop)
    t = Trainer(cfg, runtime.Runtime(torch.device("cpu")), model, train, None, progress=False)
    t.model.train()
    return t


def speed(train: Tensor, args) -> dict:
    """Examples/s of one training step, interleaved in blocks (the order rotates every block).
    diffusers: its step as its users run it (fp32, Adam, clip_grad_norm_); diffusers-bf16: the same
    under CPU autocast (what the platform offers it too); ours-fp32: lowerbound's Trainer step with
    fp32 and foreach AdamW (the loop before issue 16's knobs, still with its EMA and seeding);
    ours: the Trainer step with its defaults (fused AdamW where torch has it) and bf16 autocast where
    the CPU has bfloat16 instructions (runtime.cpu_bf16()), else fp32."""
    from lowerbound.train import runtime

    torch.manual_seed(args.seed)
    unet, sched = diffusers_unet(args.dropout).train(), ddpm_scheduler()
    unet16 = copy.deepcopy(unet)
    opt_d = torch.optim.Adam(unet.parameters(), lr=args.lr)
    opt_d16 = torch.optim.Adam(unet16.parameters(), lr=args.lr)
    bf16 = runtime.cpu_bf16() is not None
    trainers = {name: our_trainer(train, args, **extra)
                for name, extra in {"ours-fp32": {"precision": "fp32", "fused_adamw": False},
                                    "ours": {"precision": "bf16" if bf16 else "fp32"}}.items()}
    g = torch.Generator().manual_seed(args.seed)
    y0 = to_signed(train, 17)

    def diffusers_block(model, opt, autocast: bool) -> None:
        for _ in range(args.block_steps):
            idx = torch.randint(0, len(train), (args.batch,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                diffusers_step(model, sched, opt, y0[idx], g)

    def our_block(t) -> None:
        for _ in range(args.block_steps):
            t.train_step()
        t.drain()  # the steps' losses reach the host and are checked for NaN, as in the loop

    steps = {"diffusers": lambda: diffusers_block(unet, opt_d, False),
             "diffusers-bf16": lambda: diffusers_block(unet16, opt_d16, True),
             **{name: (lambda t=t: our_block(t)) for name, t in trainers.items()}}
    if not bf16:
        del steps["diffusers-bf16"]
    names = list(steps)
    rates = {k: [] for k in names}
    for block in range(args.blocks + 1):  # block 0 warms every model up and is not counted
        order = names[block % len(names):] + names[:block % len(names)]
        for name in order:
            t0 = time.perf_counter()
            steps[name]()
            dt = time.perf_counter() - t0
            if block > 0:
                rates[name].append(args.batch * args.block_steps / dt)
        if block > 0:
            print("  block " + str(block) + ": " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items())
                  + " ex/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"parameters": {"diffusers": params(unet), "ours": params(trainers["ours"].model.net)},
            "batch": args.batch, "blocks": args.blocks, "steps_per_block": args.block_steps,
            "dropout": args.dropout, "threads": torch.get_num_threads(), "cpu_bf16": runtime.cpu_bf16(),
            "load_average_before_after": [args.load_before, os.getloadavg()],
            "examples_per_second_median": {k: round(v, 1) for k, v in med.items()},
            "examples_per_second_blocks": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "ratio_ours_over_diffusers": round(med["ours"] / med["diffusers"], 3),
            "ratio_ours_fp32_over_diffusers": round(med["ours-fp32"] / med["diffusers"], 3),
            "ratio_ours_over_ours_fp32": round(med["ours"] / med["ours-fp32"], 3),
            **({"ratio_ours_over_diffusers_bf16": round(med["ours"] / med["diffusers-bf16"], 3)}
               if "diffusers-bf16" in med else {})}


@torch.inference_mode()
def bound_bits(model: Diffusion, x: Tensor, estimator: str, seed: int, k: int = 32):
    """Per-example bound in bits/dim [N] float64 and the Bound itself."""
    b = model.bound(x, estimator=estimator, samples=k if estimator == "mc" else None,
                    generator=torch.Generator().manual_seed(seed))
    return b.nats / (model.dims * math.log(2)), b


def quality(train: Tensor, valid: Tensor, args) -> dict:
    torch.manual_seed(args.seed)
    unet, sched = diffusers_unet(args.dropout).train(), ddpm_scheduler()
    ema = copy.deepcopy(unet).eval()
    opt = torch.optim.Adam(unet.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    y0 = to_signed(train, 17)
    best, history = (math.inf, None, 0), []
    step, t0, next_eval, budget = 0, time.time(), 0.0, args.minutes * 60
    eval_seconds = 0.0
    while True:
        elapsed = time.time() - t0 - eval_seconds  # training time only: validation is not charged
        if elapsed >= next_eval or elapsed >= budget:
            te = time.time()
            per, _ = bound_bits(as_diffusion(ema, args.chunk), valid, "mc", seed=123, k=args.valid_k)
            v = float(per.mean())
            eval_seconds += time.time() - te
            history.append({"step": step, "seconds": round(elapsed, 1), "valid_bpd_mc": round(v, 4)})
            print(f"  step {step:5d} {elapsed:6.0f}s valid {v:.4f} bits/dim (mc-k={args.valid_k})",
                  file=sys.stderr)
            if v < best[0]:
                best = (v, copy.deepcopy(ema.state_dict()), step)
            next_eval = elapsed + args.eval_every
            if elapsed >= budget:
                break
        idx = torch.randint(0, len(train), (args.batch,), generator=g)
        diffusers_step(unet, sched, opt, y0[idx], g)
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(pm, 1 - decay)
    train_seconds = time.time() - t0
    out = {"parameters": params(unet), "steps": step,
           "train_seconds_excl_validation": round(train_seconds - eval_seconds, 1),
           "validation_seconds": round(eval_seconds, 1),
           "examples_per_second": round(step * args.batch / (train_seconds - eval_seconds), 1),
           "best_step": best[2], "best_valid_bpd_mc": round(best[0], 4), "history": history}
    Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"selected_by_valid": best[1], "final": ema.state_dict(), "dropout": args.dropout},
               args.checkpoint)
    return out


def score_test(test: Tensor, args) -> dict:
    """Our bound on the test split for the weights quality() saved: the full sum (vlb-T=1000) or,
    with --test-estimator mc, the unbiased Monte Carlo sum over --test-k steps per example."""
    saved = torch.load(args.checkpoint)
    unet = diffusers_unet(saved["dropout"]).eval()
    out, n = {}, len(test)
    for label in ("selected_by_valid", "final") if args.final else ("selected_by_valid",):
        unet.load_state_dict(saved[label])
        for clip in {"no": (False,), "yes": (True,), "both": (False, True)}[args.clip]:
            model = as_diffusion(unet, args.chunk, clip)
            te = time.time()
            per, b = bound_bits(model, test, args.test_estimator, seed=7, k=args.test_k)
            key = label + ("_clip_x0" if clip else "")
            out[key] = {
                "estimator": b.estimator, "test_bpd": round(float(per.mean()), 4),
                "stderr_over_examples": round(float(per.std() / math.sqrt(n)), 4),
                "terms_bpd": {k: round(float(v.mean()), 4) for k, v in b.term_bits_per_dim().items()},
                "seconds": round(time.time() - te, 1), "threads": args.threads,
                "load_average": [round(v, 2) for v in os.getloadavg()]}
            r = out[key]
            print(f"  test {key}: {r['test_bpd']:.4f} +- {r['stderr_over_examples']:.4f} bits/dim "
                  f"({r['estimator']}, {r['seconds']} s) terms {r['terms_bpd']}", file=sys.stderr)
    return out


def ours(args) -> dict:
    """Our diffusion family (defaults, config vlb) trained for --minutes through compare, test bound."""
    from digits_diffusion import main as digits_diffusion  # benchmarks/ is the script's folder

    out = Path(args.out).with_name("digits_diffusers_peer_ours.json")
    result = digits_diffusion(["--minutes", str(args.minutes), "--configs", "vlb", "--threads",
                               str(args.threads), "--json", str(out),
                               "--out", str(Path(args.checkpoint).parent / f"ours-{args.minutes:g}min")])
    return {"minutes": args.minutes, "run": result["runs"]["vlb"], "machine": result["machine"],
            "full_result": out.name}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["speed", "quality", "test", "ours"], required=True,
                   help="quality trains and saves the weights to --checkpoint; test scores them")
    p.add_argument("--checkpoint", default="runs/diffusers_peer/ema.pt")
    p.add_argument("--minutes", type=float, default=3.0,
                   help="training wall-clock of the quality part, validation time not counted")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--dropout", type=float, default=0.0, help="dropout of both UNets")
    p.add_argument("--blocks", type=int, default=8, help="timed blocks per model in the speed part")
    p.add_argument("--block-steps", type=int, default=10)
    p.add_argument("--eval-every", type=float, default=15.0,
                   help="training seconds between validation checks")
    p.add_argument("--valid-k", type=int, default=16, help="timesteps per example of the MC validation bound")
    p.add_argument("--chunk", type=int, default=4096, help="rows per net call in a bound")
    p.add_argument("--final", action="store_true", help="also score the final weights on test")
    p.add_argument("--clip", choices=["no", "yes", "both"], default="no",
                   help="score with x0 clipped to [-1, 1] (yes), unclipped (no) or both")
    p.add_argument("--test-estimator", choices=["full", "mc"], default="full",
                   help="the test bound: the full sum over T steps, or Monte Carlo over --test-k steps")
    p.add_argument("--test-k", type=int, default=128, help="steps per example of --test-estimator mc")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "digits_diffusers_peer.json"))
    args = p.parse_args()
    args.load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    import diffusers

    data = load("digits")
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(data.train)))
    n_valid = len(data.train) // 10
    valid, train = data.train[perm[:n_valid]], data.train[perm[n_valid:]]
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.update({
        "benchmark": "digits-bpd peer: diffusers UNet2DModel + DDPMScheduler (L_simple) "
                     "vs lowerbound's diffusion family",
        "machine": f"{platform.machine()}, {cpu_model()}, 2 cores; threads as in each part's args",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "split": f"train {len(train)} / valid {len(valid)} (default_rng(1)) / test {len(data.test)}",
        "schedule_alignment_max_abs_alpha_bar_gap": check_alignment()})
    if args.part == "speed":
        results["speed"] = dict(speed(train, args), args=vars(args))
    elif args.part == "quality":
        results["quality"] = dict(quality(train, valid, args), args=vars(args))
        results.pop("test", None)  # scores of older weights
    elif args.part == "ours":
        results["ours_same_budget"] = ours(args)
    else:
        scores = score_test(data.test, args)  # merged with earlier scores of the same weights
        new = {k: dict(v, args=vars(args)) for k, v in scores.items()}
        results["test"] = {**results.get("test", {}), **new}
    out.write_text(json.dumps(results, indent=2))

    if "speed" in results:
        s = results["speed"]
        print(f"\n| step | parameters | examples/s (median, batch {s['batch']}, {s['threads']} threads) |")
        print("| --- | --- | --- |")
        for k, v in s["examples_per_second_median"].items():
            n = s["parameters"]["diffusers" if k.startswith("diffusers") else "ours"]
            print(f"| {k} | {n} | {v:.0f} |")
        print(f"ours / diffusers step throughput: {s['ratio_ours_over_diffusers']:.2f} "
              f"(ours fp32 / diffusers {s['ratio_ours_fp32_over_diffusers']:.2f}; "
              "load average before, after: "
              f"{s['load_average_before_after']})")
    if "ours_same_budget" in results:
        r = results["ours_same_budget"]
        t = r["run"]["test"]
        print(f"\nours (diffusion, vlb config), {r['minutes']} min, {r['run']['steps']} steps: test "
              f"{t['bits_per_dim']:.3f} +- {t['stderr']:.3f} bits/dim ({t['estimator']})")
    if "quality" in results and "test" in results:
        q = results["quality"]
        print(f"\ndiffusers L_simple, {q['steps']} steps in {q['train_seconds_excl_validation']} s, "
              f"best valid at step {q['best_step']}\n| weights | test bits/dim (our bound) | prior "
              "| diffusion | reconstruction |\n| --- | --- | --- | --- | --- |")
        for k, r in results["test"].items():
            t = r["terms_bpd"]
            print(f"| {k} | {r['test_bpd']:.3f} +- {r['stderr_over_examples']:.3f} | {t['prior']:.4f} "
                  f"| {t['diffusion']:.3f} | {t['reconstruction']:.4f} |")


if __name__ == "__main__":
    main()
