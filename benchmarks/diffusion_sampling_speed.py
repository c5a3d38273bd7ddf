"""Sampling speed of the diffusion families on digits: samples/s for 64 samples by DDPM ancestral
(all T = 1000 steps), DDIM (50 steps) and the VDM's ancestral sampler (1000 and 100 steps), each in
fp32 and under bf16 autocast (sample.batches), measured interleaved in one process (fp32, bf16,
bf16, fp32, ... per repeat) so that the ratio fp32 time / bf16 time is paired on the same load.

    flock /work/bench.lock python benchmarks/diffusion_sampling_speed.py [--repeats 3] [--threads 2]

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
WARM_UP = ("DDPM ancestral, T=1000", "VDM ancestral, 100 steps")  # the first sampler of each model


def samplers(ddpm, vdm) -> dict:
    """name -> (net calls per sample batch, fn(precision, generator) -> samples)."""
    common = {"progress": False, "batch_size": N}
    return {
        "DDPM ancestral, T=1000": (ddpm.timesteps, lambda p, g: ancestral(ddpm, N, generator=g, precision=p,
                                                                         **common)),
        "DDPM DDIM, 50 steps": (50, lambda p, g: ddim(ddpm, N, steps=50, generator=g, precision=p, **common)),
        "VDM ancestral, 100 steps": (100, lambda p, g: ancestral(vdm, N, generator=g, steps=100,
                                                                 precision=p, **common)),
        "VDM ancestral, 1000 steps": (1000, lambda p, g: ancestral(vdm, N, generator=g, steps=1000,
                                                                   precision=p, **common)),
    }


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runtime.flush_denormals(torch.device("cpu"))
    bf16 = runtime.cpu_bf16()
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    load_before = os.getloadavg()
    torch.manual_seed(0)
    ddpm, vdm = build("diffusion", {}, K, SHAPE).eval(), build("vdm", {}, K, SHAPE).eval()
    rows = []
    for name, (calls, fn) in samplers(ddpm, vdm).items():
        m = measure(fn, precisions, args.repeats, warm_up=name in WARM_UP)
        sec = m["seconds"]
        row = {"sampler": name, "net_calls_per_batch": calls, "n": N,
               "fp32_samples_per_s": N / statistics.median(sec["fp32"]), "seconds": sec}
        if bf16:
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
                 f"{row['bf16_speedup_median']:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if bf16 else ""),
              flush=True)
    result = {
        "benchmark": "diffusion_sampling_speed", "cpu": cpu_model(), "cpu_bf16": bf16,
        "threads": args.threads,
        "torch": torch.__version__, "repeats": args.repeats, "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "models": {"diffusion": f"default config, untrained, {_params(ddpm):,} parameters, "
                                f"T={ddpm.timesteps}",
                   "vdm": f"default config, untrained, {_params(vdm):,} parameters"},
        "note": "untrained models: speed only (a sampler's cost does not depend on the weights); "
                "samples/s = 64 / median seconds of one 64-sample batch; speed-up = fp32 s / bf16 s, "
                "paired per repeat, the order alternating",
        "rows": rows,
    }
    print(f"CPU {result['cpu']} (bf16: {bf16}), {args.threads} threads, load average "
          f"{load_before[0]:.2f} before, {result['load_average_after'][0]:.2f} after")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # the machine is shared and noisy: keep every run's numbers, the newest first
    last = json.loads(OUT.read_text()) if OUT.is_file() else None
    earlier = [] if last is None else [{k: v for k, v in last.items() if k != "earlier_runs"}] + \
        last.get("earlier_runs", [])
    OUT.write_text(json.dumps({**result, "earlier_runs": earlier}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
