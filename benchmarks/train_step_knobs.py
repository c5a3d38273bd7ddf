"""speed: what each training-loop option buys, as examples/s ratios in one process (issue 16).

For each net of step_nets.py (the VDM's UNet, the diffusion UNet and TimeMLP, digits, batch 128) one
Trainer per setting is built from the same seed: the baseline has every option off (foreach AdamW,
the finite check, hence a host sync, after every step, fp32, contiguous weights, eager), and each
other setting turns one option on (fused_adamw, finite_check=logged, precision=bf16, channels_last,
compile) or the combination given by --combo.  Blocks of each (as many steps as take the baseline
`--block-seconds`) run interleaved, `--repeats` times after one untimed round, the order rotating,
so a shared machine's load hits all alike; the ratio of a setting is the median over repeats of
baseline seconds / its seconds in the same repeat (wall-clock, and CPU seconds of this process beside
it, which other users of a shared machine disturb less).  The first step's seconds show compile's cost.
With --device cuda, --count-syncs counts the host syncs that 10 steps of the default settings still
make (torch.cuda.set_sync_debug_mode) and the lines of Python that make them.

    flock /work/bench.lock python benchmarks/train_step_knobs.py [--nets vdm-unet ...] [--append]
        [--knobs fused_adamw finite_check=logged bf16 channels_last] [--combo fused_adamw+bf16]
        [--device cpu|cuda] [--count-syncs] [--threads 2] [--block-seconds 0.5] [--repeats 7]
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import step_nets
from lowerbound.train import runtime

OFF = {"fused_adamw": False, "finite_check": "every_step", "precision": "fp32", "channels_last": False,
       "compile": False}
KNOBS = {"fused_adamw": {"fused_adamw": True}, "finite_check=logged": {"finite_check": "logged"},
         "bf16": {"precision": "bf16"}, "channels_last": {"channels_last": True},
         "compile": {"compile": True}}


def settings(knobs: list[str], combos: list[str], device: str) -> dict[str, dict]:
    out = {"baseline": dict(OFF)}
    for name in knobs + combos:
        parts = name.split("+")
        if "bf16" in parts and device == "cpu" and runtime.cpu_bf16() is None:
            print(f"skipping {name}: this CPU has no bfloat16 instructions", file=sys.stderr)
            continue
        out[name] = {**OFF, **{k: v for p in parts for k, v in KNOBS[p].items()}}
    return out


def measure(net: str, device: str, variants: dict[str, dict], block_seconds: float, repeats: int) -> dict:
    """Blocks of as many steps as take the baseline about block_seconds; one untimed round first."""
    trainers = {name: step_nets.trainer(net, device, **loop) for name, loop in variants.items()}
    warmup = {name: step_nets.block(t, 1) for name, t in trainers.items()}
    steps = max(2, round(block_seconds / (step_nets.block(trainers["baseline"], 3) / 3)))
    times = {name: [] for name in trainers}  # (wall, CPU) seconds of each timed block
    names = list(trainers)
    for r in range(repeats + 1):
        for name in names[r % len(names):] + names[:r % len(names)]:
            cpu = time.process_time()
            wall = step_nets.block(trainers[name], steps)
            if r:
                times[name].append((wall, time.process_time() - cpu))
    batch = trainers["baseline"].cfg.batch_size
    rows = {}
    for name, t in trainers.items():
        ratios = [b[0] / s[0] for b, s in zip(times["baseline"], times[name])]
        cpu_ratios = [b[1] / s[1] for b, s in zip(times["baseline"], times[name])]
        rows[name] = {"options": {k: v for k, v in variants[name].items() if OFF[k] != v},
                      "examples_per_s": batch * steps / statistics.median(w for w, _ in times[name]),
                      "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                      "cpu_ratio": statistics.median(cpu_ratios), "first_step_s": warmup[name],
                      "block_seconds_wall_cpu": times[name],
                      "fused": bool(t.state.optimizer.param_groups[0].get("fused")), "compiled": t.compiled}
    return {"net": net, "parameters": step_nets.parameters(trainers["baseline"]), "batch_size": batch,
            "steps_per_block": steps, "repeats": repeats, "settings": rows}


def count_syncs(net: str, steps: int) -> dict:
    """Host syncs of `steps` steps of the default loop on CUDA, by the line of Python that made them."""
    t = step_nets.trainer(net, "cuda")
    step_nets.block(t, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step_nets.block(t, steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                                if "synchroniz" in str(w.message))
    return {"steps": steps, "syncs": sum(where.values()), "where": dict(where.most_common())}


def table(rows: list[dict]) -> str:
    lines = ["| net | setting | examples/s | ratio to baseline, wall (median) | min..max | ratio, CPU time "
             "| first step s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        for name, s in r["settings"].items():
            lines.append(f"| {r['net']} | {name} | {s['examples_per_s']:.0f} | {s['ratio']:.3f} | "
                         f"{s['ratio_min']:.2f}..{s['ratio_max']:.2f} | {s['cpu_ratio']:.3f} | "
                         f"{s['first_step_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = step_nets.parser(__doc__, 0, 7, "benchmarks/results/train_step_knobs.json")
    p.add_argument("--block-seconds", type=float, default=0.5, help="the baseline's seconds per timed block")
    p.add_argument("--knobs", nargs="*", choices=list(KNOBS),
                   default=["fused_adamw", "finite_check=logged", "bf16", "channels_last"])
    p.add_argument("--combo", nargs="*", default=["fused_adamw+finite_check=logged+bf16"],
                   help="settings of several knobs joined by +")
    p.add_argument("--count-syncs", action="store_true", help="CUDA: count host syncs per step")
    p.add_argument("--append", action="store_true",
                   help="keep the other nets' rows already in --out (one net per run on a busy machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        runtime.flush_denormals(torch.device("cpu"))  # as run.train does
    variants = settings(args.knobs, args.combo, args.device)
    out = Path(args.out)
    kept = json.loads(out.read_text())["rows"] if args.append and out.is_file() else []
    for net in args.nets:  # one net at a time, written as it finishes
        start = time.perf_counter()
        row = measure(net, args.device, variants, args.block_seconds, args.repeats)
        if args.count_syncs and args.device == "cuda":
            row["syncs_per_10_steps"] = count_syncs(net, 10)
        row["machine"] = step_nets.machine(args.threads, args.device)
        row["seconds"] = round(time.perf_counter() - start, 1)
        kept = [r for r in kept if (r["net"], r["machine"]["device"]) != (net, args.device)] + [row]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"baseline": OFF, "rows": kept}, indent=2) + "\n")
        m = row["machine"]
        print(f"\n{net} on {args.device}, {args.threads} thread(s), {m['cpu']}, load average "
              f"{m['load_average']}; median of {args.repeats} interleaved blocks of "
              f"{row['steps_per_block']} steps, {row['seconds']:.0f} s\n")
        print(table([row]), flush=True)
        if "syncs_per_10_steps" in row:
            print("host syncs in 10 steps of the default loop:", json.dumps(row["syncs_per_10_steps"]))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
