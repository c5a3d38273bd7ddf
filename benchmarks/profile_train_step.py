"""speed: where a training step's time goes, per operator (issue 16's "Training throughput").

For each net of step_nets.py (the VDM's default UNet, the diffusion family's UNet and its default
TimeMLP, on digits, batch 128) this runs the one training loop (Trainer: model.loss, backward,
clipping, the finite check, AdamW, the EMA), times `--steps` steps after a warm-up (wall ms per step,
median of `--repeats` blocks, and examples/s from it), then profiles `--profile-steps` further steps
with torch.profiler and prints the operators with the most self CPU time (the time spent in the
operator itself, not in the operators it calls) as a markdown table.  Self CPU time is what the
CPU spends; on a GPU the kernels run asynchronously and the table shows launch costs.

    flock /work/bench.lock python benchmarks/profile_train_step.py [--threads 2] [--device cpu]
        [--out benchmarks/results/profile_train_step.json]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import step_nets


def profile_net(name: str, device: str, steps: int, repeats: int, profile_steps: int, top: int,
                loop: dict) -> dict:
    t = step_nets.trainer(name, device, **loop)
    step_nets.block(t, 5)  # warm-up: allocator, first-call costs
    seconds = [step_nets.block(t, steps) / steps for _ in range(repeats)]
    ms = 1000 * statistics.median(seconds)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step_nets.block(t, profile_steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    ops = [{"op": e.key, "calls_per_step": e.count / profile_steps,
            "self_cpu_ms_per_step": e.self_cpu_time_total / 1000 / profile_steps,
            "self_cpu_percent": 100 * e.self_cpu_time_total / total} for e in rows]
    return {"net": name, "family": step_nets.NETS[name][0], "model_options": step_nets.NETS[name][1],
            "parameters": step_nets.parameters(t), "batch_size": t.cfg.batch_size,
            "ms_per_step": ms, "ms_per_step_blocks": [1000 * s for s in seconds],
            "examples_per_s": t.cfg.batch_size / (ms / 1000), "steps_per_block": steps,
            "profiled_steps": profile_steps, "profiled_self_cpu_ms_per_step": total / 1000 / profile_steps,
            "top_ops": ops}


def table(r: dict) -> str:
    lines = [f"### {r['net']} ({r['parameters']:,} parameters, batch {r['batch_size']}): "
             f"{r['ms_per_step']:.1f} ms/step, {r['examples_per_s']:.0f} examples/s "
             f"(median of {len(r['ms_per_step_blocks'])} blocks of {r['steps_per_block']} steps)",
             "", "| op | calls/step | self CPU ms/step | % of self CPU |", "| --- | ---: | ---: | ---: |"]
    for o in r["top_ops"]:
        lines.append(f"| {o['op']} | {o['calls_per_step']:.0f} | {o['self_cpu_ms_per_step']:.2f} | "
                     f"{o['self_cpu_percent']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = step_nets.parser(__doc__, 10, 3, "benchmarks/results/profile_train_step.json")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a loop option (TrainConfig), e.g. --set precision=bf16 (JSON values)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    loop = {k: _value(v) for k, _, v in (s.partition("=") for s in args.set)}
    rows = [profile_net(n, args.device, args.steps, args.repeats, args.profile_steps, args.top, loop)
            for n in args.nets]
    info = step_nets.machine(args.threads, args.device)
    print(f"One training step on digits through the Trainer, {args.device}, {args.threads} thread(s), "
          f"{info['cpu']}, load average {info['load_average']}, loop options {loop or 'defaults'}\n")
    print("\n\n".join(table(r) for r in rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "loop_options": loop, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


if __name__ == "__main__":
    raise SystemExit(main())
