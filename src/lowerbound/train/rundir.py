"""The run directory of design.md, and the one object the loop hands what it writes.

    DIR/config.json          resolved config with its schema version
    DIR/metrics.csv          one row per logged step
    DIR/checkpoints/         step-XXXXXXXX.pt (last K), best.pt, `latest` pointer
    DIR/model.safetensors    exported (EMA, best-validation) weights, config in the metadata
    DIR/samples/*.png        fixed-seed sample grids from the EMA weights at each evaluation
    DIR/report.md + *.png    written at the end

A new run refuses a directory that already holds files; `--resume` requires one that holds a run.
Whoever writes into a run directory holds its lock (io/lock.py) for as long as it writes, so two
trainings never share one; under the lock, temporaries left by a killed write are removed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..io import checkpoint, metrics
from ..io.files import WriteError, atomic_write_text, os_error_sentence, remove_temporaries
from ..io.lock import NAMES as LOCK_NAMES
from ..io.lock import RunLock
from . import runtime

CONFIG = "config.json"
EXPORT = "model.safetensors"
BEST = "best.pt"
SAMPLE_SEED = 1234
SAMPLE_CHUNK = 64  # samples are drawn in chunks so a large grid cannot exhaust memory


def read_config(folder: Path) -> dict[str, Any]:
    """The stored config of a run directory; one UserError sentence when it is not one."""
    folder = Path(folder)
    path = folder / CONFIG
    if folder.exists() and not folder.is_dir():
        raise UserError(f"The path {folder} is a file, not a run directory.")
    if not folder.is_dir():
        raise UserError(f"The run directory {folder} does not exist.")
    if not path.is_file():
        raise UserError(f"The folder {folder} is not a lowerbound run directory (it has no {CONFIG}).")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise UserError(os_error_sentence(e, path, "read")) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise UserError(f"The file {path} is not valid JSON.") from None
    if not isinstance(data, dict) or "family" not in data:
        raise UserError(f"The file {path} is not a lowerbound run config.")
    return data


class RunDir:
    """Files of one run; only rank 0 makes one (other ranks pass files=None to the loop)."""

    def __init__(self, path: Path, keep: int = 3, num_samples: int = 64):
        self.path = Path(path)
        self.keep = keep
        self.num_samples = num_samples
        self.ckpt_dir = self.path / "checkpoints"
        self.metrics = metrics.MetricsLog(self.path / "metrics.csv")

    @staticmethod
    def check_new(path: Path) -> None:
        """Refuse a path that is a file, lies under a file, or holds anything (nothing is ever
        overwritten); writes nothing."""
        path = Path(path)
        for above in [path, *path.parents]:
            if above.exists():
                if not above.is_dir():
                    where = "is a file" if above == path else f"lies under {above}, which is a file"
                    raise UserError(f"The run directory {path} {where}, not a folder; choose another "
                                    f"--run-dir.")
                break
        busy = RunLock(path).busy() if path.is_dir() else None
        if busy:
            raise UserError(busy)
        if path.is_dir() and any(p.name not in LOCK_NAMES for p in path.iterdir()):
            raise UserError(f"The run directory {path} is not empty; pass --resume to continue the run "
                            f"in it, or choose another --run-dir.")

    def open(self, *, resume: bool) -> RunLock:
        """Make the directory (a new run), take its lock for the run's life and clear temporaries
        that killed writes left; returns the held lock.  A new run re-checks emptiness under the lock,
        so of two runs started at once in one new directory only the first goes on."""
        if not resume:
            self.check_new(self.path)
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(os_error_sentence(e, self.path, "create the run directory")) from None
        lock = RunLock(self.path, "train --resume" if resume else "train").acquire()
        try:
            if not resume:
                self.check_new(self.path)
            note = lock.takeover_note()
            if note:
                stderr_log(note)
            stale = [*remove_temporaries(self.path), *remove_temporaries(self.ckpt_dir)]
            if stale:
                stderr_log(f"removed {len(stale)} temporary file(s) left by an interrupted write "
                           f"({', '.join(p.name for p in stale[:3])}).")
        except BaseException:
            lock.release()
            raise
        return lock

    def create(self, config: dict[str, Any]) -> None:
        try:
            (self.path / "samples").mkdir(exist_ok=True)
        except OSError as e:
            raise UserError(os_error_sentence(e, self.path / "samples", "create")) from None
        atomic_write_text(self.path / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ used by the loop
    @property
    def last_checkpoint(self) -> Path | None:
        return checkpoint.latest_path(self.ckpt_dir)

    def write_row(self, row: dict[str, Any]) -> None:
        self.metrics.write(row)

    def save_checkpoint(self, state: dict[str, Any], *, best: bool) -> None:
        """Write a step checkpoint (or best.pt); a failed write names the checkpoint a resume uses."""
        try:
            if best:
                checkpoint.save(self.ckpt_dir, state, name=BEST, move_latest=False)
            else:
                checkpoint.save(self.ckpt_dir, state, keep=self.keep)
        except WriteError as e:
            sentence = f"{str(e)[:-1]}, at step {state['step']}; {self._resume_point()}"
            raise WriteError(sentence, e.path) from None

    def _resume_point(self) -> str:
        """Where `--resume` would continue, for a sentence after a failed write."""
        try:
            last = checkpoint.latest_path(self.ckpt_dir)
        except UserError:
            last = None
        if last is None or not last.is_file():
            return "no checkpoint had been written yet."
        return (f"the last complete checkpoint {last} is intact, and lowerbound train --resume --run-dir "
                f"{self.path} continues from it.")

    def save_samples(self, step: int, model: nn.Module) -> Path | None:
        if not self.num_samples:
            return None
        return save_samples(self.path / "samples" / f"step-{step:08d}.png", model, self.num_samples)


def draw(model: nn.Module, n: int, seed: int = SAMPLE_SEED, *, precision: str = "fp32",
         progress: bool = True, batch_size: int = SAMPLE_CHUNK) -> Tensor:
    """n samples in chunks of batch_size, from one generator seeded by `seed` (same seed, same grid),
    on the CPU.
    Diffusion models go through sample.ancestral (one bar over all their net calls); precision: fp32,
    or bf16 / fp16 autocast (sample.batches; the caller checks the device can)."""
    from ..models.diffusion import VDM, Diffusion
    from ..sample import ancestral
    from ..sample.batches import autocast

    g = runtime.generator(seed, model.device)
    if isinstance(model, (Diffusion, VDM)):
        return ancestral(model, n, generator=g, progress=progress, batch_size=batch_size,
                         precision=precision).cpu()
    # other iterative samplers (autoregressive: D net calls) take long enough to deserve their own bar
    kwargs = {"progress": progress} if getattr(model, "iterative_sampler", False) else {}
    chunks = []
    with torch.no_grad(), autocast(precision, model.device):
        for i in range(0, n, batch_size):
            chunks.append(model.sample(min(batch_size, n - i), generator=g, **kwargs).cpu())
    return torch.cat(chunks)


def save_samples(path: Path, model: nn.Module, n: int, seed: int = SAMPLE_SEED) -> Path | None:
    """A PNG grid (discrete images) or scatter (2-D points) of n samples; None if it cannot be drawn."""
    if not getattr(model, "has_likelihood", True) and not hasattr(model, "sample"):
        return None
    x = draw(model, n, seed)
    return save_picture(path, x, getattr(model, "levels", None))


def save_picture(path: Path, x: Tensor, levels: int | None, title: str | None = None,
                 nrow: int | None = None) -> Path | None:
    """Images [N, C, H, W] as a grid (nrow per row), points [N, 2] as a scatter; None for layouts
    neither fits."""
    from ..io import images

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if levels is not None and x.dim() == 4:
        images.save_grid(path, x.long(), levels, nrow=nrow)
    elif levels is not None and x.dim() == 3:
        images.save_grid(path, x.long().unsqueeze(1), levels, nrow=nrow)
    elif x.dim() == 2 and x.shape[1] == 2:
        images.save_scatter(path, x.float(), title=title)
    else:
        return None
    return path


def stderr_log(message: str) -> None:
    print(f"lowerbound: {message}", file=sys.stderr, flush=True)
