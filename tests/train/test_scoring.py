"""What gets scored: the model in eval mode (dropout off) and the EMA's averaged weights, at validation,
at the final scoring and in the export.  Oracles: a bound that is exact only with dropout off, and the
EMA shadow itself, checked to differ from the trained weights so the tests have teeth."""

import math

import pytest
import torch
from torch import nn

import lowerbound
from lowerbound.cli import main
from lowerbound.data.base import Dataset
from lowerbound.eval import likelihood
from lowerbound.io import checkpoint, export
from lowerbound.models import registry
from lowerbound.models.base import GenerativeModel
from lowerbound.prob.bound import Bound
from lowerbound.train import runtime
from lowerbound.train.config import resolve
from lowerbound.train.load import averaged_weights
from lowerbound.train.loop import Trainer
from lowerbound.train.scoring import score, summarize_split

LEVELS, SHAPE = 5, (1, 2, 3)


class DropoutUniform(GenerativeModel):
    """The uniform model's exact bound D log K, passed through dropout: right only in eval mode (in
    train mode half the dimensions count twice and half not at all)."""

    family = "dropout-uniform"
    estimators = ("exact",)

    def __init__(self):
        super().__init__(levels=LEVELS, shape=SHAPE)
        self.drop = nn.Dropout(0.5)

    def bound(self, x, *, estimator=None, samples=None, generator=None):
        per_dim = torch.full(x.shape, math.log(LEVELS), dtype=torch.float64)
        return Bound({"nll": self.drop(per_dim).flatten(1).sum(1)}, "exact", exact=True, dims=self.dims)


def _data(n=64):
    x = torch.randint(0, LEVELS, (n, *SHAPE), generator=torch.Generator().manual_seed(0))
    return Dataset("toy", x, x, LEVELS, SHAPE)


def test_likelihood_and_score_run_the_model_in_eval_mode_and_restore_it():
    torch.manual_seed(0)
    model, data = DropoutUniform().train(), _data()
    r = likelihood(model, data, progress=False)
    assert r.value == pytest.approx(math.log2(LEVELS), rel=1e-12) and r.stderr == 0.0
    assert model.training
    b = score(model, data.test, 16, seed=0, device=torch.device("cpu"))
    torch.testing.assert_close(b.nats, torch.full((64,), 6 * math.log(LEVELS), dtype=torch.float64))
    assert model.training
    d = summarize_split(model, data, "test", batch_size=16, seed=0, device=torch.device("cpu"))
    assert d["bits_per_dim"] == pytest.approx(math.log2(LEVELS), rel=1e-12)


def _cfg(**kw):
    base = dict(family="independent", steps=20, batch_size=32, lr=0.5, eval_every=20, log_every=10,
                checkpoint_every=20, patience=0, ema_decay=0.9)
    return resolve(base, kw)


def test_validation_scores_the_ema_weights_not_the_trained_ones():
    x = torch.randint(0, LEVELS, (300, *SHAPE), generator=torch.Generator().manual_seed(0))
    valid = torch.randint(0, LEVELS, (60, *SHAPE), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    trainer = Trainer(_cfg(), runtime.setup("cpu"), registry.build("independent", {"init_scale": 0.1},
                                                                    LEVELS, SHAPE), x, valid, progress=False)
    trainer.run()
    averaged = registry.build("independent", {}, LEVELS, SHAPE)
    averaged.load_state_dict({"logits": trainer.state.ema.shadow["logits"]})
    scale = 1 / (6 * math.log(2))
    want = averaged.bound(valid).nats.double().mean().item() * scale
    raw = trainer.model.bound(valid).nats.double().mean().item() * scale
    assert abs(raw - want) > 1e-4  # the oracle is not trivial: the average differs from the last weights
    assert trainer.last_valid == pytest.approx(want, rel=1e-6)


def test_averaged_weights_of_a_state_are_the_ema_shadow():
    state = {"model": {"w": torch.zeros(3), "buffer": torch.ones(2)},
             "ema": {"shadow": {"w": torch.tensor([1.0, 2.0, 3.0])}}}
    got = averaged_weights(state)
    assert torch.equal(got["w"], torch.tensor([1.0, 2.0, 3.0])) and torch.equal(got["buffer"], torch.ones(2))
    assert torch.equal(averaged_weights({**state, "ema": None})["w"], torch.zeros(3))


def test_export_and_load_give_the_ema_weights_of_the_chosen_state(tmp_path):
    d = tmp_path / "run"
    assert main(["train", "independent", "--data", "digits", "--steps", "20", "--lr", "0.1",
                 "--eval-every", "10", "--checkpoint-every", "10", "--set", "num_samples=16",
                 "--run-dir", str(d), "--json"]) == 0
    best = checkpoint.load(d / "checkpoints" / "best.pt")
    shadow, trained = best["ema"]["shadow"]["logits"], best["model"]["logits"]
    assert (shadow - trained).abs().max() > 1e-3  # the EMA is not the trained weights here
    weights, _ = export.load(d / "model.safetensors")
    torch.testing.assert_close(weights["logits"], shadow)
    last_state = checkpoint.load(checkpoint.latest_path(d / "checkpoints"))
    last = lowerbound.load(d, checkpoint="last")
    torch.testing.assert_close(last.logits.detach(), last_state["ema"]["shadow"]["logits"])
