"""What every iterative sampler shares: n samples drawn in batches (so any n fits in memory), one
progress bar over all the net calls of all batches (its total known before the first call, so its
ETA is honest), inference mode, and autocast at the requested precision.

Precision "fp32" runs as written; "bf16" and "fp16" run the nets under torch.autocast (Micikevicius
et al. 2018, "Mixed Precision Training": matrix products in 16 bits, the rest in 32) while the
samplers keep their state and the schedule's coefficients in float32/float64, so only the net's
output is rounded.  fp16 is offered on CUDA only (CPU autocast has no fp16 kernels worth using); whether a
CPU has bfloat16 instructions is the caller's check (train.runtime.cpu_bf16, in `lowerbound sample`),
since without them bf16 is emulated and slower than fp32.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Callable

import torch
from torch import Tensor

from ..errors import UserError
from ..models import work

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device):
    """The autocast context of `precision` on `device` (a null context for fp32)."""
    if precision not in PRECISIONS:
        raise UserError(f"Unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"Precision fp16 needs a CUDA device; this model is on {device.type}: "
                        "use bf16 or fp32.")
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """n split into batches of batch_size, the last one smaller."""
    if n < 1 or batch_size < 1:
        raise UserError(f"Ask for at least one sample in batches of at least one, got n={n}, "
                        f"batch_size={batch_size}.")
    return [min(batch_size, n - s) for s in range(0, n, batch_size)]


def in_batches(one_batch: Callable[[int], Tensor], n: int, batch_size: int, calls: int, *,
               device: torch.device, precision: str = "fp32", progress: bool = True,
               desc: str = "sample") -> Tensor:
    """torch.cat of one_batch(size) over the batches of n, in order, [n, ...] on one_batch's device.

    one_batch makes `calls` net calls and says so with models.work.advance(1) after each; the bar (to
    stderr, absent without progress) counts them over all batches."""
    sizes = batch_sizes(n, batch_size)
    total = len(sizes) * calls
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="net call", leave=False, file=sys.stderr)
        meter = work.metered(lambda f: bar.update(round(f * total) - bar.n))
    else:
        bar, meter = None, nullcontext()
    try:
        with torch.inference_mode(), autocast(precision, device), meter as m:
            if m is not None:
                m.plan(total)
            out = torch.cat([one_batch(size) for size in sizes])
    finally:
        if bar is not None:
            bar.close()
    return out.clone()  # a normal tensor again: inference tensors cannot enter autograd later
