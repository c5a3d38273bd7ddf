"""The progress bar of a bound (models/work.py, eval.likelihood.ExampleBar) against two oracles: the
work an estimator plans is exactly the work it ticks off (so the bar's total, and its ETA, are honest:
the last report is 1.0 and none before it exceeds it), and the numbers are bitwise those without
progress.  Every estimator of every family that does work inside one batch is checked, on tiny models."""

import pytest
import torch

from lowerbound.data.base import Dataset
from lowerbound.eval import likelihood
from lowerbound.eval.likelihood import ExampleBar
from lowerbound.models import build, work

LEVELS, SHAPE = 17, (1, 8, 8)
FAST_ODE = {"rtol": 1e-2, "atol": 1e-2, "check": 2}
DDPM = {"net": "mlp", "timesteps": 40, "chunk": 24, "mlp": {"width": 16, "depth": 1, "emb_dim": 8}}
VDM = {"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8}
VAE = {"hidden": [16], "latent_dim": 2, "chunk_elements": 4 * 64 * 17}
FLOW = {"transforms": 1, "hidden": [8], "chunk_elements": 5 * 64}

# (family, options, estimator, samples, options of the estimator, reports expected in one batch at least)
CASES = [
    ("diffusion", DDPM, "full", None, None, 5),
    ("diffusion", DDPM, "mc", 8, None, 2),
    ("diffusion", DDPM, "is", 8, None, 2),
    ("diffusion", DDPM, "is", 8, {"proposal": "uniform"}, 2),
    ("diffusion", DDPM, "ode", 2, FAST_ODE, 3),
    ("vdm", {**VDM}, "mc", 64, None, 2),
    ("vdm", {**VDM}, "lds", 64, None, 2),
    ("vdm", {**VDM}, "ode", 2, {"solver": "euler", "steps": 5, "check": 0}, 3),
    ("vae", VAE, "iwae", 20, None, 3),
    ("flow", FLOW, "iw", 16, None, 3),
    ("flow", FLOW, "dequantization", 16, None, 3),
]


def _model(family, options):
    torch.manual_seed(0)
    return build(family, options, LEVELS, SHAPE).eval()


def _x(n=20):
    return torch.randint(0, LEVELS, (n, *SHAPE), generator=torch.Generator().manual_seed(1))


def _bound(model, x, estimator, samples, options):
    extra = {"options": options} if options else {}
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        return model.bound(x, estimator=estimator, samples=samples, generator=g, **extra)


def _same(a, b):
    assert a.estimator == b.estimator and a.terms.keys() == b.terms.keys()
    for k in a.terms:
        assert torch.equal(a.terms[k], b.terms[k]), k
    assert (a.variance is None) == (b.variance is None)
    if a.variance is not None:
        assert torch.equal(a.variance, b.variance)


@pytest.mark.parametrize("family, options, estimator, samples, est_options, least", CASES,
                         ids=[f"{c[0]}-{c[2]}{'-' + str(c[4]) if c[4] else ''}" for c in CASES])
def test_planned_work_is_the_work_done_and_the_numbers_do_not_change(family, options, estimator, samples,
                                                                     est_options, least):
    model, x = _model(family, options), _x()
    plain = _bound(model, x, estimator, samples, est_options)
    reports = []
    with work.metered(reports.append) as meter:
        metered = _bound(model, x, estimator, samples, est_options)
    _same(plain, metered)
    assert meter.planned > 0 and meter.done == pytest.approx(meter.planned, rel=1e-9)
    assert reports[-1] == pytest.approx(1.0, rel=1e-9)
    assert len(reports) >= least, reports  # the bar moves inside the batch
    assert all(a <= b for a, b in zip(reports, reports[1:])), reports  # never backwards


def test_outside_a_metered_block_plan_and_advance_do_nothing():
    work.plan(5)
    work.advance(3)  # no meter: nothing raised, nothing kept
    with work.metered(lambda f: None) as meter:
        pass
    assert meter.planned == 0 and meter.done == 0


def test_likelihood_bar_goes_to_stderr_moves_inside_batches_and_is_absent_without_progress(capsys,
                                                                                         monkeypatch):
    model = _model("diffusion", DDPM)
    x = _x(30)
    ds = Dataset("toy-digits", x, x, LEVELS, SHAPE)
    quiet = likelihood(model, ds, "test", estimator="mc", samples=4, batch_size=16, progress=False)
    assert capsys.readouterr().err == ""
    seen = []
    to = ExampleBar._to
    monkeypatch.setattr(ExampleBar, "_to", lambda self, pos: (seen.append(pos), to(self, pos))[1])
    shown = likelihood(model, ds, "test", estimator="mc", samples=4, batch_size=16, progress=True)
    assert "bound on toy-digits test" in capsys.readouterr().err
    assert torch.equal(quiet.per_example, shown.per_example)
    assert seen == sorted(seen) and seen[-1] == 30  # positions in examples, never backwards, to the end
    assert any(0 < p < 16 for p in seen) and any(16 < p < 30 for p in seen)  # inside both batches
    seen.clear()  # an estimator that reports nothing: the bar moves at each batch's end
    likelihood(_model("independent", {}), ds, "test", batch_size=16, progress=True)
    assert seen == [16, 30]
