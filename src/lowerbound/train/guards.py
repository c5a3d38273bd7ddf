"""Guards of the training loop: fail loudly on non-finite numbers, stop cleanly on signals.

- A non-finite loss, bound term or gradient norm raises `TrainingDiverged` before the optimizer
  step, with the step, each term and what to try (style.md habit 10: nothing is skipped silently).
  The run keeps its last good checkpoint and exits non-zero.
- SIGINT and SIGTERM (a pre-empted cluster job) only set a flag; the loop finishes its step, saves a
  checkpoint and exits with a message saying how to resume.
"""

from __future__ import annotations

import math
import signal
import threading

import torch


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; the message says where and what to try."""


def check_finite(step: int, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor | None,
                 *, checkpoint: str | None = None) -> None:
    """terms: name -> scalar batch mean (nats); raise TrainingDiverged unless everything is finite."""
    values = {k: float(v) for k, v in terms.items()}
    norm = None if grad_norm is None else float(grad_norm)
    bad_terms = [k for k, v in values.items() if not math.isfinite(v)]
    bad_grad = norm is not None and not math.isfinite(norm)
    if not bad_terms and not bad_grad:
        return
    shown = ", ".join(f"{k} = {v:.6g}" for k, v in values.items())
    what = (f"the loss term(s) {', '.join(bad_terms)}" if bad_terms else "the gradient norm")
    kept = (f" The last good checkpoint is kept ({checkpoint})." if checkpoint
            else " No checkpoint had been written yet.")
    raise TrainingDiverged(
        f"Training stopped at step {step}: {what} became non-finite (batch means in nats: {shown}; "
        f"gradient norm {norm if norm is not None else 'not computed'}).{kept} Try a smaller learning "
        f"rate (--lr or --set lr=...), a gradient clip (--set grad_clip=1), warm-up "
        f"(--set warmup_steps=500), or --precision fp32."
    )


class StopSignals:
    """Context manager: while inside, SIGINT/SIGTERM set `.received` (the signal number) instead of
    killing the process.  A second SIGINT while stopping raises KeyboardInterrupt as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()
