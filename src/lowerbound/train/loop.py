"""The gradient training loop shared by every family (design.md's train room).

One step: pick the global batch for this step (a permutation per epoch seeded by (seed, epoch)),
take this rank's share, seed the step's randomness from (seed, rank, step), compute model.loss
under autocast, backpropagate (through DistributedDataParallel when launched by torchrun, which
averages gradients so the update equals one process on the whole global batch), clip, step AdamW
and the EMA.  The step's loss terms and gradient norm stay on the device until the next metric row,
where they are checked for NaN/inf (the first non-finite step raises, before anything is evaluated
or saved), so the CPU need not wait for a GPU every step (speed options: speed.py).  Evaluation of
the validation bound (on the EMA weights), checkpoints, samples and metric rows happen at fixed step
counts, so a resumed run does exactly what an uninterrupted one does.  Data redrawn every epoch
(dynamic binarization) come from `resample(epoch)`, a pure function of the epoch, so that holds for
them too.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from contextlib import nullcontext
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..prob.units import LN2
from . import runtime, speed
from .config import TrainConfig
from .ema import EMA
from .guards import StopSignals, check_finite
from .runtime import batch_indices, check_runtime
from .scoring import score
from .state import TrainState

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _Objective(nn.Module):
    """forward = the model's training loss terms, so DistributedDataParallel hooks the backward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, generator: torch.Generator, phase: str | None = None) -> dict[str, Tensor]:
        if phase is None:
            return self.model.loss(x, generator=generator).terms
        return self.model.loss(x, generator=generator, phase=phase).terms


class Trainer:
    """Trains `model` on train_x, scoring valid_x; `files` (a RunDir or None) receives what is written.
    resample: epoch -> that epoch's train examples (same count and order of examples as train_x,
    which is epoch 0's), for data redrawn every epoch; None when the train split is fixed.

    A model with `phases` (a GAN: ("discriminator", "generator")) is updated once per phase each
    step, by loss(x, phase=...); its param_groups name their "phase", and a phase's update steps only
    its own groups (their gradients alone are kept), so each group keeps its own Adam moments and
    betas: one optimizer per phase in effect.  validate(eval_model) -> float replaces the validation
    bound for models without one (a sample metric, lower is better), logged as `valid_name`."""

    def __init__(self, cfg: TrainConfig, rt: runtime.Runtime, model: nn.Module, train_x: Tensor,
                 valid_x: Tensor | None, files=None, *, progress: bool = True,
                 resample: Callable[[int], Tensor] | None = None,
                 validate: Callable[[nn.Module], float] | None = None, valid_name: str | None = None):
        check_runtime(cfg, rt)
        self.cfg, self.rt, self.files, self.progress = cfg, rt, files, progress
        self.model = model.to(rt.device)
        self.train_x, self.valid_x = train_x, valid_x
        self.resample, self._train_epoch = resample, 0
        likelihood = getattr(model, "has_likelihood", True)
        self.unit = "bpd" if getattr(model, "levels", None) is not None and likelihood else "nats"
        self.scale = 1.0 / (model.dims * LN2) if self.unit == "bpd" else 1.0
        self.validate, self.valid_name = validate, valid_name or f"valid_{self.unit}"
        groups = [{**g, "params": list(g["params"]), "lr_scale": float(g.get("lr_scale", 1.0)),
                   "weight_decay": float(g.get("weight_decay", cfg.weight_decay))}
                  for g in self.model.param_groups()] if hasattr(self.model, "param_groups") else \
            [{"params": list(self.model.parameters()), "lr_scale": 1.0}]
        self.phases = tuple(getattr(self.model, "phases", ())) or (None,)
        # phase -> the parameters whose gradients that phase's update drops (the other phases')
        self._frozen = {ph: [p for g in groups if g.get("phase") != ph for p in g["params"]]
                        for ph in self.phases if ph is not None}
        if cfg.channels_last:  # only 4-D tensors change; before the EMA and eval copies are made
            self.model.to(memory_format=torch.channels_last)
        optimizer = speed.make_adamw(groups, cfg, rt.device)
        ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.precision = runtime.resolve_precision(cfg.precision, rt.device)  # "auto" made concrete
        scaler = torch.amp.GradScaler(rt.device.type) if self.precision == "fp16" else None
        self.state = TrainState(self.model, optimizer, ema, scaler)
        self.objective = _Objective(self.model)
        if rt.distributed:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(  # a phase leaves the others' unused
                self.objective, device_ids=ids, find_unused_parameters=self.phases != (None,))
        self.eval_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.compiled = False
        if cfg.compile:  # after the eval copy, which stays eager
            self.compiled, note = speed.compile_net(self.model, self.phases != (None,))
            self._warn(note)
        self._compile_pending = self.compiled  # until the first compiled step has run
        self._rows: list[tuple[int, Tensor]] = []  # (step, [terms..., grad norm]) not yet on the host
        self._acc: list[float] | None = None
        self._perm: dict = {}
        self._loss_gen = torch.Generator(device=rt.device)
        self._acc_steps = 0
        self.last_valid: float | None = None
        self.last_valid_terms: dict[str, float] = {}

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.rt.device.type, dtype=AMP_DTYPES[self.precision])

    def train_step(self) -> None:
        """One update.  Nothing here waits for the device: the step's loss terms and gradient norm
        stay device tensors in self._rows until `drain` copies them at a metric row."""
        cfg, rt, st = self.cfg, self.rt, self.state
        s = st.step
        if self.resample is not None:
            self._use_epoch(s // max(1, len(self.train_x) // cfg.batch_size))  # batch_indices' epochs
        idx = batch_indices(len(self.train_x), cfg.batch_size, cfg.seed, s, self._perm)
        x = self.train_x[idx[rt.rank::rt.world] if rt.distributed else idx]
        if x.device != rt.device:
            x = x.to(rt.device, non_blocking=True)
        lr = cfg.lr_at(s)
        for group in st.optimizer.param_groups:  # a model may ask a larger step for some parameters
            group["lr"] = lr * group.get("lr_scale", 1.0)
        try:
            names, values, norms = self._updates(x, s)
        except Exception as e:  # noqa: BLE001 - the first compiled step: any failure of the compiler
            if not self._compile_pending:
                raise
            self._uncompile(e)
            names, values, norms = self._updates(x, s)
        self._compile_pending = False
        norm = norms[0] if len(norms) == 1 else torch.stack(norms).square().sum().sqrt()
        if st.ema is not None:
            st.ema.update(self.model)
        st.step += 1
        st.examples += cfg.batch_size
        self._rows.append((s, torch.cat([*values, norm.reshape(1)])))
        self._names = names

    def _updates(self, x: Tensor, s: int) -> tuple[list[str], list[Tensor], list[Tensor]]:
        """The updates of step s, one per phase, from randomness seeded by (seed, rank, s)."""
        cfg, rt = self.cfg, self.rt
        runtime.seed_global(runtime.derive_seed(cfg.seed, "global", rt.rank, s), rt.device)  # dropout
        g = self._loss_gen
        g.manual_seed(runtime.derive_seed(cfg.seed, "loss", rt.rank, s))
        names, values, norms = [], [], []
        for phase in self.phases:
            phase_terms, phase_values, norm = self._update(x, g, phase)
            names += phase_terms
            values.append(phase_values)
            norms.append(norm)
        return names, values, norms

    def _update(self, x: Tensor, g: torch.Generator, phase: str | None) -> tuple[list, Tensor, Tensor]:
        """One optimizer update on the loss of `phase` (None: the model's one loss): its term names,
        [n] their batch means and the gradient norm before clipping (device tensors)."""
        rt, st = self.rt, self.state
        with self._autocast():
            if phase is None:
                terms = self.objective(x, g) if rt.distributed else self.model.loss(x, generator=g).terms
            else:
                terms = self.objective(x, g, phase) if rt.distributed else \
                    self.model.loss(x, generator=g, phase=phase).terms
        means = [t.float().mean() for t in terms.values()]
        loss = means[0] if len(means) == 1 else torch.stack(means).sum()
        st.optimizer.zero_grad(set_to_none=True)
        (st.scaler.scale(loss) if st.scaler else loss).backward()
        for p in self._frozen.get(phase, ()):  # AdamW skips parameters without a gradient
            p.grad = None
        if st.scaler:
            st.scaler.unscale_(st.optimizer)
        norm = self._clip(self.cfg.grad_clip)
        if st.scaler:
            st.scaler.step(st.optimizer)  # skips the update when the scaled gradients overflowed
            st.scaler.update()
        else:
            st.optimizer.step()
        return list(terms), torch.stack(means).detach(), norm

    def drain(self) -> None:
        """Bring the steps' loss terms and gradient norms to the host (the one wait for the device)
        and add them to the metric row; the first non-finite one raises TrainingDiverged with its
        step and terms (style.md habit 10).  Called before anything is evaluated or saved, so no
        checkpoint ever holds the weights of a non-finite step."""
        if not self._rows:
            return
        steps = [s for s, _ in self._rows]
        rows = torch.stack([r for _, r in self._rows]).cpu().double().tolist()
        self._rows = []
        checked = -1 if self.state.scaler else None  # fp16: the scaler skips overflowed steps itself
        for s, row in zip(steps, rows):
            if not all(map(math.isfinite, row[:checked])):
                last = self.files.last_checkpoint if self.files is not None else None
                check_finite(s, dict(zip(self._names, map(torch.tensor, row[:-1]))),
                             None if self.state.scaler else torch.tensor(row[-1]),
                             checkpoint=str(last) if last else None)
            row = [sum(row[:-1]), *row]
            self._acc = row if self._acc is None else [a + b for a, b in zip(self._acc, row)]
            self._acc_steps += 1

    def _use_epoch(self, epoch: int) -> None:
        if epoch != self._train_epoch:
            x = self.resample(epoch)
            if x.shape != self.train_x.shape:
                raise UserError(f"The train data redrawn for epoch {epoch} have shape {tuple(x.shape)}, "
                                f"not {tuple(self.train_x.shape)} like epoch 0's.")
            self.train_x, self._train_epoch = x, epoch

    def _clip(self, max_norm: float) -> Tensor:
        """Total gradient 2-norm before clipping (a device tensor); gradients are scaled by
        min(1, max_norm / (norm + 1e-6)) on the device (max_norm 0: no clipping), the rule of
        torch.nn.utils.clip_grad_norm_, so the host never waits for the norm."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.rt.device)
        norms = torch._foreach_norm(grads)
        total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
        if max_norm > 0:
            torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp(max=1.0))
        return total

    # ------------------------------------------------------------------ compile
    def _uncompile(self, e: Exception) -> None:
        self.eager()
        self._warn(f"compile: the compiled net failed at its first step ({speed.first_line(e)}); "
                   "training eagerly.")

    def eager(self) -> None:
        """Back to the net's own forward (scoring after training sees other batch shapes, which a
        compiled net would compile again)."""
        if self.compiled:
            speed.uncompile_net(self.model)
            self.compiled = False

    def _warn(self, message: str | None) -> None:
        if message and self.rt.is_main:
            print(f"lowerbound: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ evaluation and logging
    def evaluate(self) -> float | None:
        """Validation bound of the averaged weights (bits/dim, or nats for continuous data)."""
        self.eval_model.load_state_dict(self.state.averaged_weights())
        if self.valid_x is None or len(self.valid_x) == 0:
            return None
        if self.validate is not None:
            self.last_valid = float(self.validate(self.eval_model))
            return self.last_valid
        estimator, samples = getattr(self.eval_model, "validation_estimator", (None, None))
        bound = score(self.eval_model, self.valid_x, self.cfg.eval_batch_size,
                      runtime.derive_seed(self.cfg.seed, "valid"), self.rt.device,
                      estimator=estimator, samples=samples)
        self.last_valid = float(bound.nats.mean()) * self.scale
        self.last_valid_terms = {k: float(v.mean()) * self.scale for k, v in bound.terms.items()}
        return self.last_valid

    def log_row(self, lr: float, seconds: float, valid: float | None) -> dict:
        self.drain()
        mean = torch.tensor(self._acc, dtype=torch.float64, device=self.rt.device) / self._acc_steps
        acc = runtime.mean_over_ranks(mean, self.rt).tolist()
        n = self._acc_steps * self.cfg.batch_size
        row = {"step": self.state.step, "time": round(self.state.elapsed, 3),
               "examples_per_s": round(n / seconds, 1) if seconds > 0 else None,
               f"loss_{self.unit}": acc[0] * self.scale}
        for name, v in zip(self._names, acc[1:-1]):
            row[f"{name}_{self.unit}"] = v * self.scale
        row.update({"grad_norm": acc[-1], "lr": lr, self.valid_name: valid})
        self._acc, self._acc_steps = None, 0
        return row

    # ------------------------------------------------------------------ the loop
    def run(self) -> str:
        """Train until steps, minutes, patience or a signal; returns the reason it stopped."""
        from tqdm import tqdm

        cfg, rt, st = self.cfg, self.rt, self.state
        # under a time budget the bar counts seconds (its ETA is the budget's end), else steps
        timed = cfg.minutes is not None and 60 * cfg.minutes / 0.01 < cfg.steps
        bar = tqdm(total=round(60 * cfg.minutes) if timed else cfg.steps,
                   initial=round(st.elapsed) if timed else st.step,
                   disable=not (self.progress and rt.is_main), file=sys.stderr,
                   unit="s" if timed else "step", dynamic_ncols=True, leave=False,
                   bar_format=("{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
                               if timed else None))
        reason = "steps"
        seconds = 0.0
        self.model.train()
        with StopSignals() as signals, bar:  # the bar is cleared however the loop ends
            while st.step < cfg.steps:
                t0 = time.perf_counter()
                self.train_step()
                s = st.step
                last = s >= cfg.steps
                is_eval = s % cfg.eval_every == 0 or last
                if cfg.finite_check == "every_step" or s % cfg.log_every == 0 or is_eval or \
                        s % cfg.checkpoint_every == 0:
                    self.drain()  # timed: the device's queue of work is part of the steps' time
                dt = time.perf_counter() - t0
                st.elapsed += dt
                seconds += dt
                bar.update(min(dt, bar.total - bar.n) if timed else 1)
                out_of_time = cfg.minutes is not None and st.elapsed >= 60 * cfg.minutes
                stop = runtime.any_rank(signals.received is not None or out_of_time, rt)
                is_ckpt = s % cfg.checkpoint_every == 0 or last or stop
                if s % cfg.log_every == 0 or is_eval or is_ckpt:
                    self.drain()  # raises on a non-finite step before anything is evaluated or saved
                    valid = None
                    # no evaluation on a signal: it would change the early-stopping record
                    if is_eval or out_of_time:
                        valid = self.evaluate()
                        self._after_eval(valid)
                    row = self.log_row(cfg.lr_at(s - 1), seconds, valid)
                    seconds = 0.0
                    if self.files is not None and rt.is_main:
                        self.files.write_row(row)
                    bar.set_postfix({"step": s, f"loss {self.unit}": f"{row[f'loss_{self.unit}']:.4f}",
                                     "ex/s": f"{row['examples_per_s'] or 0:.0f}"}, refresh=False)
                if cfg.patience and st.evals_since_best >= cfg.patience:
                    st.stopped_early, reason = True, "patience"
                if stop:
                    reason = signals.name or ("minutes" if out_of_time else "signal")
                if is_ckpt or reason != "steps":
                    self.save()
                if reason != "steps":
                    break
        bar.close()
        return reason

    def _after_eval(self, valid: float | None) -> None:
        if valid is not None and self.state.record_validation(valid):
            if self.files is not None and self.rt.is_main:
                self.files.save_checkpoint(self.state.state_dict(), best=True)
        if self.files is not None and self.rt.is_main and self._sample_now():
            self.files.save_samples(self.state.step, self.eval_model)

    def _sample_now(self) -> bool:
        """A grid at each evaluation, except for iterative samplers (T net calls a grid), which
        draw one at the end only, unless sample_every asks (style.md: no 1000-step sampling inside
        the training loop unless asked)."""
        every = self.cfg.sample_every
        if every < 0:
            return not getattr(self.eval_model, "iterative_sampler", False)
        return every > 0 and self.state.step % every == 0

    def save(self) -> None:
        if self.files is not None and self.rt.is_main:
            self.files.save_checkpoint(self.state.state_dict(), best=False)
