"""Why our diffusion step is not 2x diffusers' on this CPU: the ceiling its convolutions set.

Issue 16 asks for our diffusion training step at 2x diffusers' UNet2DModel + DDPMScheduler at equal
parameters.  digits_diffusers_peer.py --part speed measures the ratio; this asks how far it could go.
Steps of the same two nets (701,345 parameters each, batch 128, dropout 0), interleaved in blocks in
one process: diffusers' fp32 step (as its users run it), our Trainer step with its defaults (bf16
autocast where the CPU has it), and the same with channels_last (the layout oneDNN's convolutions
prefer).  Then torch.profiler over `--profile-steps` more steps of each of ours: the self CPU time of
the convolution kernels (forward and both backward products) per step.  The ceiling is diffusers'
step time over our convolutions' time: the ratio a step would reach if nothing but its convolutions
took any time.  Below 2, no loop or fusion can reach the issue's goal with this net; only fewer
or faster convolutions can.

    flock /work/bench.lock python benchmarks/diffusers_ceiling.py [--threads 2] [--blocks 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import profile

from digits_diffusers_peer import T, ddpm_scheduler, diffusers_step, diffusers_unet, our_trainer, params
from lowerbound.data import load
from lowerbound.prob.units import to_signed
from lowerbound.train import runtime
from machine_info import cpu_model

CONV_KERNELS = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::slow_conv2d",
                "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward")


def conv_share(step, steps: int) -> dict:
    """Self CPU ms per step of the convolution kernels and of everything, under the profiler."""
    with profile() as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_KERNELS) / 1000 / steps
    return {"conv_ms_per_step": round(conv, 2), "profiled_ms_per_step": round(total, 2),
            "conv_share": round(conv / total, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--block-steps", type=int, default=10)
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "diffusers_ceiling.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    ns = argparse.Namespace(batch=128, lr=1e-3, ema=0.995, dropout=0.0, seed=0)
    train = load("digits").train
    bf16 = "bf16" if runtime.cpu_bf16() else "fp32"
    ours = {"ours": our_trainer(train, ns, precision=bf16),
            "ours-channels_last": our_trainer(train, ns, precision=bf16, channels_last=True)}
    torch.manual_seed(0)
    unet, sched = diffusers_unet(0.0).train(), ddpm_scheduler()
    opt = torch.optim.Adam(unet.parameters(), lr=ns.lr)
    g = torch.Generator().manual_seed(0)
    y0 = to_signed(train, 17)

    def diffusers_one() -> None:
        diffusers_step(unet, sched, opt, y0[torch.randint(0, len(train), (ns.batch,), generator=g)], g)

    steps = {"diffusers": diffusers_one, **{k: t.train_step for k, t in ours.items()}}
    ms = {k: [] for k in steps}
    for block in range(args.blocks + 1):  # block 0 warms up and is not counted
        for name in list(steps)[block % 3:] + list(steps)[:block % 3]:
            t0 = time.perf_counter()
            for _ in range(args.block_steps):
                steps[name]()
            for t in ours.values():
                t.drain()
            if block:
                ms[name].append(1000 * (time.perf_counter() - t0) / args.block_steps)
        if block:
            print(f"  block {block}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in ms.items()) + " ms/step",
                  file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in ms.items()}
    profiled = {k: conv_share(steps[k], args.profile_steps) for k in steps}
    conv = profiled["ours"]["conv_ms_per_step"]
    result = {"benchmark": __doc__.splitlines()[0], "cpu_model": cpu_model(), "cores": os.cpu_count(),
              "threads": args.threads, "torch": torch.__version__, "cpu_bf16": runtime.cpu_bf16(),
              "our_precision": bf16, "timesteps": T,
              "parameters": {"diffusers": params(unet), "ours": params(ours["ours"].model.net)},
              "ms_per_step_median": {k: round(v, 2) for k, v in med.items()},
              "ms_per_step_blocks": {k: [round(x, 2) for x in v] for k, v in ms.items()},
              "ratio_ours_over_diffusers": round(med["diffusers"] / med["ours"], 3),
              "ratio_ours_channels_last_over_diffusers":
                  round(med["diffusers"] / med["ours-channels_last"], 3),
              "profile": profiled,
              "ceiling_diffusers_ms_over_our_conv_ms": round(med["diffusers"] / conv, 3),
              "load_average_before_after": [load_before, os.getloadavg()]}
    Path(args.out).write_text(json.dumps(result, indent=1))
    for k in steps:
        pk = profiled[k]
        print(f"{k:20s} {med[k]:7.1f} ms/step; profiled: convolutions {pk['conv_ms_per_step']:.1f} ms "
              f"of {pk['profiled_ms_per_step']:.1f} ({100 * pk['conv_share']:.0f}%)")
    print(f"ours / diffusers: {result['ratio_ours_over_diffusers']}x; ceiling (diffusers' step over our "
          f"convolutions alone): {result['ceiling_diffusers_ms_over_our_conv_ms']}x; wrote {args.out}")


if __name__ == "__main__":
    main()
