"""The nets whose training step the speed benchmarks time (issue 16), each trained by the one Trainer.

  vdm-unet        the VDM family's default on digits (net "auto": the UNet)
  diffusion-unet  the diffusion family with net=unet
  diffusion-mlp   the diffusion family with net=mlp (its TimeMLP; the default on digits until the UNet)

`trainer(name, device, **loop)` builds one on digits (batch 128, the family's defaults, seed 0) with
no evaluation, checkpoints or progress bar; `block(trainer, steps)` runs that many more steps of its
loop (Trainer.run, so the loop's own costs are counted) and returns the wall seconds, waiting for
the device to finish.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from lowerbound.data import load
from lowerbound.models import registry
from lowerbound.train import runtime
from lowerbound.train.config import TrainConfig
from lowerbound.train.loop import Trainer
from machine_info import cpu_model

NETS = {
    "vdm-unet": ("vdm", {}),
    "diffusion-unet": ("diffusion", {"net": "unet"}),
    "diffusion-mlp": ("diffusion", {"net": "mlp"}),
}


def parser(doc: str, steps: int, repeats: int, out: str) -> argparse.ArgumentParser:
    """--nets, --device, --threads, --steps (per timed block), --repeats, --out of both benchmarks."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    if steps:
        p.add_argument("--steps", type=int, default=steps, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--out", default=out)
    return p


def trainer(name: str, device: str = "cpu", batch_size: int = 128, **loop) -> Trainer:
    """A Trainer of net `name` on digits' train split; loop: further TrainConfig options."""
    family, options = NETS[name]
    data = load("digits")
    torch.manual_seed(0)
    model = registry.build(family, options, data.levels, data.shape)
    cfg = TrainConfig(family=family, model=options, steps=1, batch_size=batch_size, eval_every=10**9,
                      checkpoint_every=10**9, log_every=10, patience=0, device=device, **loop)
    x = data.train.to(device) if device != "cpu" else data.train
    return Trainer(cfg, runtime.setup(device), model, x, None, None, progress=False)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def block(t: Trainer, steps: int) -> float:
    """Wall seconds of `steps` more steps of t's loop (the device drained at both ends)."""
    t.cfg = dataclasses.replace(t.cfg, steps=t.state.step + steps)
    synchronize(t.rt.device)
    start = time.perf_counter()
    t.run()
    synchronize(t.rt.device)
    return time.perf_counter() - start


def parameters(t: Trainer) -> int:
    return sum(p.numel() for p in t.model.parameters())


def machine(threads: int, device: str) -> dict:
    """CPU model, device, torch version and threads; the load average is read at the end."""
    out = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
           "device": device, "load_average": [round(v, 2) for v in os.getloadavg()]}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    return out
