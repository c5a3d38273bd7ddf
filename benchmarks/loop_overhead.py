"""speed: what the training loop adds to a model's own cost (issue 4's "Speed" item).

Steps per second of `lowerbound.train.loop.Trainer` (batch selection from (seed, step), seeded
randomness, loss terms, grad-norm clipping, the finite check, AdamW, EMA, metric accumulation,
the progress bar) against a bare loop on the same model, data and batch size: random batch,
model.loss(x).mean(), backward, AdamW step.  Blocks of both are interleaved and the median
block time is compared, so a shared machine's noise hits both alike.  Times are CPU seconds of
this process (time.process_time, one thread), which other users of a shared machine disturb far
less than wall-clock time; wall-clock medians are reported beside them.

    python benchmarks/loop_overhead.py [--families independent vae] [--batch-size 128] [--steps 200]
        [--repeats 7] [--threads 1] [--out benchmarks/results/loop_overhead.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from lowerbound.data import load
from lowerbound.models import registry
from lowerbound.train import runtime
from lowerbound.train.config import TrainConfig
from lowerbound.train.loop import Trainer


def bare_block(model, opt, x, batch_size: int, steps: int, g: torch.Generator) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        loss = model.loss(x[idx], generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.process_time() - c0, time.perf_counter() - t0


def loop_block(trainer: Trainer, steps: int) -> tuple[float, float]:
    trainer.cfg = dataclasses.replace(trainer.cfg, steps=trainer.state.step + steps)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.run()
    return time.process_time() - c0, time.perf_counter() - t0


def measure(family: str, batch_size: int, steps: int, repeats: int, progress: bool) -> dict:
    data = load("digits")
    torch.manual_seed(0)
    bare = registry.build(family, {}, data.levels, data.shape)
    opt = torch.optim.AdamW(bare.parameters(), lr=1e-3)
    torch.manual_seed(0)
    model = registry.build(family, {}, data.levels, data.shape)
    cfg = TrainConfig(family=family, steps=1, batch_size=batch_size, eval_every=10**9,
                      checkpoint_every=10**9, patience=0)
    trainer = Trainer(cfg, runtime.setup("cpu"), model, data.train, None, None, progress=progress)
    g = torch.Generator().manual_seed(0)
    bare_block(bare, opt, data.train, batch_size, steps // 4, g)  # warm-up both
    loop_block(trainer, steps // 4)
    t_bare, t_loop = [], []
    for _ in range(repeats):
        t_bare.append(bare_block(bare, opt, data.train, batch_size, steps, g))
        t_loop.append(loop_block(trainer, steps))
    cb, cl = (statistics.median(t[0] for t in ts) for ts in (t_bare, t_loop))
    wb, wl = (statistics.median(t[1] for t in ts) for ts in (t_bare, t_loop))
    params = sum(p.numel() for p in model.parameters())
    return {"family": family, "parameters": params, "batch_size": batch_size, "steps_per_block": steps,
            "repeats": repeats, "bare_steps_per_cpu_s": steps / cb, "loop_steps_per_cpu_s": steps / cl,
            "overhead_cpu": cl / cb - 1.0, "overhead_wall": wl / wb - 1.0,
            "bare_steps_per_wall_s": steps / wb, "loop_steps_per_wall_s": steps / wl,
            "cpu_ratios": [lo[0] / b[0] for lo, b in zip(t_loop, t_bare)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["independent", "vae"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action="store_true", help="show the loop's progress bar (stderr)")
    p.add_argument("--out", default="benchmarks/results/loop_overhead.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    runtime.flush_denormals(torch.device("cpu"))
    rows = [measure(f, args.batch_size, args.steps, args.repeats, args.progress) for f in args.families]
    print(f"loop overhead on digits, CPU, {args.threads} thread(s), batch {args.batch_size}, "
          f"median of {args.repeats} interleaved blocks of {args.steps} steps")
    print(f"{'family':<12} {'params':>8} {'bare steps/cpu-s':>17} {'loop steps/cpu-s':>17} "
          f"{'overhead (cpu)':>15} {'overhead (wall)':>16}  {'cpu ratio min..max':>18}")
    for r in rows:
        print(f"{r['family']:<12} {r['parameters']:>8} {r['bare_steps_per_cpu_s']:>17.1f} "
              f"{r['loop_steps_per_cpu_s']:>17.1f} {100 * r['overhead_cpu']:>14.1f}% "
              f"{100 * r['overhead_wall']:>15.1f}%  {min(r['cpu_ratios']):>9.3f}..{max(r['cpu_ratios']):.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
