"""The diffusion term of the DDPM bound, sum_{t=2..T} E_q KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t)), by one
of three estimators (Ho et al. 2020 eq. 5; the rows L_t are Diffusion._rows):

    full   every step t = 2..T, one draw of x_t each ("vlb-T=1000"); variance by successive differences
    mc     (T - 1) * mean of L_t over k steps t ~ U{2..T} per example, unbiased ("vlb-mc-k=16")
    is     k stratified draws of t with q_t ~ sqrt(E[L_t^2]), weighted 1 / (k q_t) (importance.py)

The prior and the reconstruction terms stay in ddpm.py (Diffusion.bound), which adds the
reconstruction's own variance to the one returned here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...errors import UserError
from .importance import importance_draws, pilot_rows

if TYPE_CHECKING:
    from .ddpm import Diffusion


def neighbour_variance(rows: Tensor) -> Tensor:
    """sum_t Var(L_t) [B] from one draw of each of the terms rows [n >= 2, B] (independent draws whose
    means change slowly with t), by successive differences (von Neumann et al. 1941): half the squared
    differences of neighbours, plus half again the first and the last, so that the end terms (L_T can
    hold most of the variance) count in full.  In expectation: each end term's variance once, their
    neighbours' 1.5 times, the others' once, plus the squared changes of the means between neighbours:
    it errs high, never low."""
    d2 = (rows[1:] - rows[:-1]).pow(2)
    return d2.sum(0) / 2 + (d2[0] + d2[-1]) / 2


def planned_rows(model: Diffusion, b: int, estimator: str, samples: int | None, options: dict) -> int:
    """The (example, step) rows diffusion_term evaluates on a batch of b examples: its work for the
    progress bar (models/work.py), each row one net call's share."""
    T = model.timesteps
    if T < 2:
        return 0
    if estimator == "full":
        return (T - 1) * b
    k = 16 if samples is None else int(samples)
    pilot = estimator == "is" and options.get("proposal", "pilot") == "pilot"
    return k * b + (pilot_rows(b, T, k) if pilot else 0)


def diffusion_term(model: Diffusion, y0: Tensor, x: Tensor, estimator: str, samples: int | None,
                   options: dict, generator: torch.Generator | None) -> tuple[Tensor, Tensor | None, str]:
    """(diffusion [B] nats float64, the variance [B] of its estimate or None where it cannot be
    estimated (full with T = 2, mc or is with k = 1), the estimator's name)."""
    b, T = y0.shape[0], model.timesteps
    ex = torch.arange(b, device=y0.device)
    zero = torch.zeros(b, dtype=torch.float64, device=y0.device)
    if estimator == "full":
        if T < 2:  # no steps between the decoder and the prior
            return zero, zero, f"vlb-T={T}"
        steps = torch.arange(2, T + 1, device=y0.device)
        example, step = ex.repeat(steps.numel()), steps.repeat_interleave(b)
        rows = model._rows(y0, x, example, step, generator).reshape(-1, b)
        return rows.sum(0), neighbour_variance(rows.detach()) if T > 2 else None, f"vlb-T={T}"
    k = 16 if samples is None else int(samples)
    if k < 1:
        raise UserError(f"The {estimator} estimator needs samples >= 1, got {samples}.")
    name = f"vlb-{estimator}-k={k}"
    if T < 2:
        return zero, zero, name
    if estimator == "is":
        rows = importance_draws(model, y0, x, k, generator, options)
        return rows.sum(0), neighbour_variance(rows.detach()) if k > 1 else None, name
    step = torch.randint(2, T + 1, (k * b,), generator=generator, device=y0.device)
    draws = (T - 1) * model._rows(y0, x, ex.repeat(k), step, generator).reshape(k, b)
    return draws.mean(0), draws.detach().var(0) / k if k > 1 else None, name
