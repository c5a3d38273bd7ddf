"""The GAN family and the loop's phases, against oracles: two separate Adam optimizers stepped in
turn (a reference computation of what the loop's phase updates must equal), the R1 penalty against
finite differences, rounding onto the levels, and a bound that refuses to exist."""

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.models import registry
from lowerbound.models.base import GenerativeModel
from lowerbound.prob.bound import Bound
from lowerbound.train import runtime
from lowerbound.train.config import resolve
from lowerbound.train.loop import Trainer

TINY = {"architecture": "mlp", "hidden": [16], "latent_dim": 4, "validation_samples": 20}


class TwoPlayers(GenerativeModel):
    """Phase one moves a on (a b - 1)^2; phase two moves b on (a + b - 3)^2: each loss depends on both."""

    phases = ("one", "two")

    def __init__(self):
        super().__init__(levels=None, shape=(1,))
        self.a = torch.nn.Parameter(torch.tensor(0.3))
        self.b = torch.nn.Parameter(torch.tensor(-0.2))

    def loss(self, x, *, generator=None, phase=None):
        ones = torch.ones(x.shape[0])
        value = (self.a * self.b - 1) ** 2 if phase == "one" else (self.a + self.b - 3) ** 2
        return Bound({phase: value * ones}, "test", dims=1)

    def param_groups(self):
        return [{"params": [self.a], "phase": "one", "betas": (0.5, 0.9)},
                {"params": [self.b], "phase": "two", "lr_scale": 2.0}]


def test_phases_equal_two_adam_optimizers_stepped_in_turn():
    cfg = resolve({"family": "x", "steps": 25, "batch_size": 4, "lr": 0.05, "grad_clip": 0.0,
                   "ema_decay": 0.0, "eval_every": 100, "log_every": 5, "checkpoint_every": 100})
    model = TwoPlayers()
    Trainer(cfg, runtime.setup("cpu"), model, torch.zeros(8, 1), None, progress=False).run()
    ref = TwoPlayers()
    opt_a = torch.optim.Adam([ref.a], lr=0.05, betas=(0.5, 0.9))
    opt_b = torch.optim.Adam([ref.b], lr=0.1)
    for _ in range(25):
        for phase, opt in (("one", opt_a), ("two", opt_b)):
            opt.zero_grad()
            ref.loss(torch.zeros(1), phase=phase).terms[phase].mean().backward()
            opt.step()
    assert model.a.item() == pytest.approx(ref.a.item(), abs=1e-6)
    assert model.b.item() == pytest.approx(ref.b.item(), abs=1e-6)


def test_gan_has_no_bound():
    gan = registry.build("gan", TINY, 17, (1, 8, 8))
    assert gan.has_likelihood is False
    with pytest.raises(UserError, match="no bound"):
        gan.bound(torch.zeros(2, 1, 8, 8, dtype=torch.long))


@pytest.mark.parametrize("opts", [TINY, {"channels": [8, 8], "conv_hidden": 16, "loss": "hinge",
                                         "regularizer": "spectral"}])
def test_samples_are_levels_in_the_data_layout(opts):
    gan = registry.build("gan", opts, 17, (1, 8, 8))
    x = gan.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and x.dtype == torch.long and 0 <= x.min() and x.max() <= 16
    terms = gan.loss(x, generator=torch.Generator().manual_seed(0)).terms
    expected = {"real", "fake", "generator"} | ({"r1"} if opts.get("regularizer", "r1") == "r1" else set())
    assert set(terms) == expected and all(t.shape == (5,) for t in terms.values())


def test_r1_is_half_gamma_squared_input_gradient_at_real_data():
    torch.set_default_dtype(torch.float64)
    try:
        gan = registry.build("gan", {**TINY, "r1_gamma": 3.0}, 17, (1, 2, 2))
        x = torch.randint(0, 17, (3, 1, 2, 2), generator=torch.Generator().manual_seed(1))
        r1 = gan.loss(x, generator=torch.Generator().manual_seed(5), phase="discriminator").terms["r1"]
        g = torch.Generator().manual_seed(5)
        gan.generate(3, g)  # the loss draws the fakes first, then the dequantization noise
        real = gan.real(x, g)
        h, grad = 1e-6, torch.zeros(3, 4)
        for i in range(3):  # d/dx_i of the sum of the batch's scores (the minibatch spread couples them)
            for j in range(4):
                e = torch.zeros(3, 4)
                e[i, j] = h
                e = e.view(3, 1, 2, 2)
                grad[i, j] = (gan.discriminate(real + e).sum() - gan.discriminate(real - e).sum()) / (2 * h)
        assert torch.allclose(r1, 1.5 * grad.square().sum(1), rtol=1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


def test_bad_options_are_refused():
    with pytest.raises(UserError, match="r1_gamma"):
        registry.build("gan", {"r1_gamma": -1.0}, 17, (1, 8, 8))
    with pytest.raises(UserError, match="conv"):
        registry.build("gan", {"architecture": "conv"}, None, (2,))
