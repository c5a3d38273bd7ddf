"""train room (design.md): the loop, its state, EMA, guards, runtime; the only room touching
optimizers, torch.distributed and disk.  `train(cfg, run_dir)` runs one; `load(path)` reads one."""

from .config import TrainConfig, resolve
from .load import load
from .run import configure, train

__all__ = ["TrainConfig", "configure", "load", "resolve", "train"]
