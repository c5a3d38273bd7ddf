"""Sampling speed of the diffusion families on digits: samples/s for 64 samples by DDPM ancestral
(all T = 1000 steps), DDIM (50 steps) and the VDM's ancestral sampler (1000 and 100 steps), each in
fp32 and under bf16 autocast (sample.batches), measured interleaved in one process (fp32, bf16,
bf16, fp32, ... per repeat) so that the ratio fp32 time / bf16 time is paired on the same load.

    flock /work/bench.lock python benchmarks/diffusion_sampling_speed.py --family diffusion
    flock /work/bench.lock python benchmarks/diffusion_sampling_speed.py --family vdm
    (each under 3 minutes on 2 cores; --repeats 3, --threads 2 by default)

The models are the families' default configurations, UNTRAINED (random weights): a sampler's cost is
its net calls and its arithmetic, which do not depend on the weights, so this measures speed only.
bf16 runs only where the CPU has bfloat16 instructions (train.runtime.cpu_bf16); else it is skipped
and said so.  Prints a table and writes benchmarks/results/diffusion_sampling_speed.json with the CPU
model and the load average (the machine is shared: a loaded machine gives pessimistic numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does: waiting threads do not spin

import torch  # noqa: E402

from lowerbound.models import build  # noqa: E402
from lowerbound.sample import ancestral, ddim  # noqa: E402
from lowerbound.train import runtime  # noqa: E402
from machine_info import cpu_model  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "diffusion_sampling_speed.json"
N, K, SHAPE = 64, 17, (1, 8, 8)


def samplers(family: str, model) -> dict:
    """name -> (net calls per sample batch, fn(precision, generator) -> samples); the cheap one first
    (it warms the model up)."""
    common = {"progress": False, "batch_size": N}
    if family == "diffusion":
        return {"DDPM DDIM, 50 steps": (50, lambda p, g: ddim(model, N, steps=50, generator=g, precision=p,
                                                              **common)),
                "DDPM ancestral, T=1000": (model.timesteps, lambda p, g: ancestral(model, N, generator=g,
                                                                                  precision=p, **common))}
    return {f"VDM ancestral, {steps} steps": (steps, lambda p, g, steps=steps: ancestral(
        model, N, steps=steps, generator=g, precision=p, **common)) for steps in (100, 1000)}


def timed(fn, precision: str) -> tuple[float, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    out = fn(precision, g)
    return time.perf_counter() - t0, out


def measure(fn, precisions: list[str], repeats: int, warm_up: bool) -> dict:
    """Seconds per precision over `repeats` rounds, the order alternating; the last samples of each.
    warm_up: one untimed call per precision first (allocator, kernels), for a model's first sampler."""
    for p in precisions if warm_up else ():
        fn(p, torch.Generator().manual_seed(0))
    seconds: dict[str, list[float]] = {p: [] for p in precisions}
    last = {}
    for r in range(repeats):
        for p in (precisions if r % 2 == 0 else precisions[::-1]):
            s, last[p] = timed(fn, p)
            seconds[p].append(s)
    return {"seconds": seconds, "samples": last}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_family(family: str, precisions: list[str], repeats: int) -> dict:
    """One part of the result: every sampler of one family's default model, with its load average."""
    load_before = os.getloadavg()
    torch.manual_seed(0)
    model = build(family, {}, K, SHAPE).eval()
    rows = []
    for i, (name, (calls, fn)) in enumerate(samplers(family, model).items()):
        m = measure(fn, precisions, repeats, warm_up=i == 0)
        sec = m["seconds"]
        row = {"sampler": name, "net_calls_per_batch": calls, "n": N,
               "fp32_samples_per_s": N / statistics.median(sec["fp32"]), "seconds": sec}
        if "bf16" in precisions:
            ratios = [a / b for a, b in zip(sec["fp32"], sec["bf16"])]
            a, b = m["samples"]["fp32"], m["samples"]["bf16"]
            row.update(bf16_samples_per_s=N / statistics.median(sec["bf16"]),
                       bf16_speedup_median=statistics.median(ratios),
                       bf16_speedup_range=[min(ratios), max(ratios)],
                       bf16_levels_in_range=bool(b.min() >= 0 and b.max() <= K - 1),
                       bf16_pixels_equal_to_fp32=float((a == b).double().mean()))
        rows.append(row)
        print(f"{name:<28} fp32 {row['fp32_samples_per_s']:8.1f} samples/s"
              + (f"   bf16 {row['bf16_samples_per_s']:8.1f} samples/s   bf16 speed-up "
                 f"{row['bf16_speedup_median']:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                 if "bf16" in precisions else ""), flush=True)
    load_after = os.getloadavg()
    print(f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    return {"model": f"{family} default config, untrained, {_params(model):,} parameters, net "
                     f"{type(model.net).__name__}", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_before": list(load_before), "load_average_after": list(load_after), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", choices=["diffusion", "vdm"],
                    help="the family to measure (repeatable; default both: run them apart to keep each "
                         "run under 3 minutes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runtime.flush_denormals(torch.device("cpu"))
    bf16 = runtime.cpu_bf16()
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    print(f"CPU {cpu_model()} (bf16: {bf16}), {args.threads} threads", flush=True)
    # the machine is shared and noisy: every part keeps its earlier runs, the newest first
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    parts = data.get("parts", {})
    for family in args.family or ["diffusion", "vdm"]:
        part = measure_family(family, precisions, args.repeats)
        old = parts.get(family)
        part["earlier_runs"] = [] if old is None else \
            [{k: v for k, v in old.items() if k != "earlier_runs"}] + old.get("earlier_runs", [])
        parts[family] = part
    result = {
        "benchmark": "diffusion_sampling_speed", "cpu": cpu_model(), "cpu_bf16": bf16,
        "threads": args.threads, "torch": torch.__version__, "repeats": args.repeats,
        "note": "untrained models: speed only (a sampler's cost does not depend on the weights); "
                "samples/s = 64 / median seconds of one 64-sample batch; speed-up = fp32 s / bf16 s, "
                "paired per repeat, the order alternating; each part has its own load average; "
                "bf16_pixels_equal_to_fp32 says nothing of bf16's accuracy here: an untrained UNet's "
                "last layer starts at zero, so its output is 0 in either precision",
        "parts": parts, "before_the_split": data.get("before_the_split", data.get("rows") and data)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
