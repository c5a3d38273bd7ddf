"""Where a run executes: device, rank and world size, and randomness derived from (seed, rank, step).

One process by default (cuda, then mps, then cpu).  Launched by torchrun (WORLD_SIZE > 1 in the
environment) it joins torch.distributed's process group with torchrun's own rendezvous: gloo on
CPU, NCCL on GPUs, the same code path.  Nothing here is home-made networking.

Every random draw of a training step comes from generators seeded by `derive_seed(seed, ...)`, a
hash of its arguments, so a resumed run or a run on N processes replays the same randomness.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from ..errors import UserError

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and prints."""
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit device that is not available is refused."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("The device cuda was asked for, but this machine has no usable CUDA GPU.")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("The device mps was asked for, but it is not available on this machine.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"Unknown device {name!r}; choose auto, cpu, cuda or mps.")


def setup(device_name: str = "auto") -> Runtime:
    """Initialise the process group when launched by torchrun; otherwise one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)  # torchrun's env:// rendezvous
    return Runtime(device, rank, world, local_rank)


def teardown(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def end_worker(code: int):
    """End a torchrun worker process now, with exit status `code`, after Python's exit handlers.

    DistributedDataParallel keeps its gloo process group alive after destroy_process_group (its
    Reducer is never freed, so the gloo threads gloo_tcp_loop and pt_gloo_runloop run on; measured in
    torch 2.13), and a process that leaves through the C++ runtime's exit, which destroys static
    objects under those running threads, aborts ("terminate called without an active exception",
    SIGABRT) whenever its peer is still alive: about 1 exit in 5 (benchmarks/torchrun_exit.py).
    os._exit skips the static destructors; the operating system reclaims the threads and sockets."""
    import atexit

    atexit._run_exitfuncs()  # what a normal exit would still run: flushes, tqdm's monitor, logging
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from a hash of the parts, e.g. derive_seed(seed, "loss", rank, step)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def seed_global(seed: int, device: torch.device) -> None:
    """Seed the global generators of the CPU and of `device` (for code that draws without a
    generator, e.g. dropout).  torch.manual_seed would also queue lazy seeding of every other
    accelerator backend, costing ~0.5 ms per call, which is more than a digits-sized step."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index or 0].manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def flush_denormals(device: torch.device) -> bool:
    """Flush denormal floats to zero on CPU (benchmarks.md: a small MLP VAE on digits halved its
    throughput without it).  Returns whether it is now set.  The setting is process-wide: callers
    that return to other code restore it (`denormals_flushed()`, torch.set_flush_denormal)."""
    if device.type != "cpu":
        return False
    return bool(torch.set_flush_denormal(True))


def denormals_flushed() -> bool:
    """Whether the CPU now flushes denormal floats to zero (torch has no getter: 2**-149, the
    smallest float32 denormal, reads back as 0 when they are flushed)."""
    return float(torch.tensor(2.0**-149, dtype=torch.float32) * 1.0) == 0.0


@lru_cache(maxsize=None)
def fused_adamw(device_type: str) -> bool:
    """Whether torch's fused AdamW kernel works on this kind of device: found by trying one step
    on a one-element parameter (its support differs by torch version and device)."""
    try:
        p = torch.zeros(1, device=device_type, requires_grad=True)
        p.grad = torch.ones_like(p)
        torch.optim.AdamW([p], lr=1e-3, fused=True).step()
    except (RuntimeError, ValueError, TypeError, NotImplementedError):
        return False
    return bool(torch.isfinite(p).all())


@lru_cache(maxsize=1)
def cpu_bf16() -> str | None:
    """The CPU's bfloat16 instruction set that torch's CPU autocast uses (amx_bf16 or avx512_bf16 on
    x86, bf16 on ARM), or None when it has none (bf16 would then be emulated, slower than fp32)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    if sys.platform == "darwin" and platform.machine() == "arm64":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out == "1":
            flags.add("bf16")
    return next((f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags), None)


def resolve_precision(name: str, device: torch.device) -> str:
    """"auto" -> bf16 where the device computes in bfloat16 natively (a CUDA GPU that supports it, a
    CPU with bf16 instructions: cpu_bf16()), else fp32; any other name is returned as it is."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_bf16() is not None else "fp32"
    return "fp32"


def mean_over_ranks(values: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Average a tensor over processes (identity in one process)."""
    if rt.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= rt.world
    return values


def any_rank(flag: bool, rt: Runtime) -> bool:
    """True on every process when it is true on any (stop requests must agree across ranks)."""
    if not rt.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=rt.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast(obj: Any, rt: Runtime) -> Any:
    """Rank 0's value of a small plain object on every process."""
    if not rt.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def batch_indices(n: int, batch_size: int, seed: int, step: int, _cache: dict | None = None) -> torch.Tensor:
    """[batch_size] indices of the global batch of `step`: epochs are fresh permutations of range(n)
    seeded by (seed, epoch), cut into n // batch_size batches (the remainder of each epoch is left).
    _cache (a dict the caller keeps) holds the current epoch's permutation between steps."""
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    key = (n, seed, epoch)
    if _cache is not None and _cache.get("key") == key:
        perm = _cache["perm"]
    else:
        g = generator(derive_seed(seed, "data", epoch), torch.device("cpu"))
        perm = torch.randperm(n, generator=g)
        if _cache is not None:
            _cache.update(key=key, perm=perm)
    if batch_size > n:  # fewer examples than a batch: draw the batch with repetition
        return perm[torch.arange(batch_size) % n]
    return perm[i * batch_size:(i + 1) * batch_size]


def check_runtime(cfg: TrainConfig, rt: Runtime) -> None:
    """Refuse settings this machine cannot run, before anything is written."""
    if cfg.batch_size % rt.world:
        raise UserError(f"The batch size {cfg.batch_size} must be divisible by the number of "
                        f"processes ({rt.world}) so the global batch stays the same.")
    precision = resolve_precision(cfg.precision, rt.device)
    if precision == "fp16" and rt.device.type == "cpu":
        raise UserError("The precision fp16 needs a GPU; use bf16 or fp32 on the CPU.")
    if precision == "bf16" and rt.device.type == "cpu" and cpu_bf16() is None:
        raise UserError("The precision bf16 on the CPU needs bfloat16 instructions (avx512_bf16, amx_bf16 "
                        "or ARM bf16), which this CPU lacks; use fp32.")
