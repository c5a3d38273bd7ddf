"""The work a bound plans for the progress bar (models/work.py) against the work it does, counted at the
net: the DDPM's bound (Ho et al. 2020, eq. 5) plans 2 decoder rows per example plus the rows of its
diffusion estimator (full, mc, is with the pilot or without), and the VAE's IWAE (Burda et al. 2016)
plans its K draws; the rows the net sees, the units planned and the units ticked off must all be equal,
or the bar's total (and its ETA) is wrong.  Chunks that do not divide the work check the last one."""

from __future__ import annotations

import pytest
import torch

from lowerbound.models import build, work

LEVELS, SHAPE = 5, (1, 2, 2)


def _counting(module: torch.nn.Module) -> list[int]:
    """The batch sizes of every call of module, appended as they happen."""
    calls: list[int] = []
    module.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    return calls


def _x(b: int) -> torch.Tensor:
    return torch.randint(0, LEVELS, (b, *SHAPE), generator=torch.Generator().manual_seed(1))


def _metered_bound(model, x, **kw):
    with torch.no_grad(), work.metered(lambda fraction: None) as meter:
        model.bound(x, generator=torch.Generator().manual_seed(2), **kw)
    return meter


@pytest.mark.parametrize("estimator, samples, options", [
    ("full", None, None),
    ("mc", 3, None),
    ("is", 3, None),                      # the pilot's rows are part of the work
    ("is", 3, {"proposal": "uniform"}),   # no pilot
])
def test_ddpm_bound_plans_the_rows_its_net_evaluates(estimator, samples, options):
    torch.manual_seed(0)
    model = build("diffusion", {"net": "mlp", "timesteps": 12, "chunk": 7,
                                "mlp": {"width": 8, "depth": 1, "emb_dim": 4}}, LEVELS, SHAPE).eval()
    calls = _counting(model.net)
    b = 5
    meter = _metered_bound(model, _x(b), estimator=estimator, samples=samples,
                           **({"options": options} if options else {}))
    rows = sum(calls)
    assert max(calls) <= 7  # chunked
    if estimator == "full":
        assert rows == 2 * b + (12 - 1) * b  # two decoder draws, then every step 2..T
    elif estimator == "mc" or options:  # k steps per example, no pilot
        assert rows == 2 * b + samples * b
    assert meter.planned == rows and meter.done == rows


@pytest.mark.parametrize("k, b", [(7, 3), (2, 5)])
def test_vae_iwae_plans_its_draws_and_ticks_off_each(k, b):
    torch.manual_seed(0)
    options = {"hidden": [8], "latent_dim": 2}
    probe = build("vae", options, LEVELS, SHAPE)
    per_draw = b * probe.dims * probe.likelihood.num_params  # decoder outputs of one draw of the batch
    # 3 draws a chunk: k = 7 ends on a chunk of 1
    model = build("vae", {**options, "chunk_elements": 3 * per_draw}, LEVELS, SHAPE)
    calls = _counting(model.decoder)
    meter = _metered_bound(model.eval(), _x(b), estimator="iwae", samples=k)
    assert sum(calls) == k * b and max(calls) <= 3 * b  # k draws of the b examples, in chunks
    assert meter.planned == k and meter.done == k
