"""Family `independent`: the bound is the exact NLL; gradient training reaches the closed-form optimum."""

import math

import torch

from lowerbound.models import registry
from lowerbound.train import runtime
from lowerbound.train.config import TrainConfig
from lowerbound.train.loop import Trainer


def _data(n=400, d=6, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(d, k, generator=g) * 1.5, -1)
    x = torch.multinomial(probs, n, replacement=True, generator=g).t().reshape(n, 1, 2, 3)
    return x, probs


def _empirical_nll(x, k):
    """Closed form: the MLE is the empirical marginal frequencies; its mean NLL in nats."""
    flat = x.reshape(len(x), -1)
    freq = torch.stack([torch.bincount(flat[:, j], minlength=k) for j in range(flat.shape[1])]).double()
    freq /= len(x)
    logf = torch.where(freq > 0, freq.log(), torch.zeros_like(freq))
    return float(-(freq * logf).sum())


def test_bound_is_the_categorical_nll():
    torch.set_default_dtype(torch.float64)
    try:
        x, probs = _data()
        model = registry.build("independent", {}, 5, (1, 2, 3))
        with torch.no_grad():
            model.logits.copy_(probs.log())
        b = model.bound(x)
        flat = x.reshape(len(x), -1)
        expected = -probs.log().gather(1, flat.t()).sum(0)
        assert b.exact and b.estimator == "exact"
        torch.testing.assert_close(b.nats, expected)
    finally:
        torch.set_default_dtype(torch.float32)


def test_samples_follow_the_probabilities():
    x, probs = _data()
    model = registry.build("independent", {}, 5, (1, 2, 3))
    with torch.no_grad():
        model.logits.copy_(probs.log())
    n = 20000
    s = model.sample(n, generator=torch.Generator().manual_seed(1)).reshape(n, -1)
    freq = torch.stack([torch.bincount(s[:, j], minlength=5) for j in range(6)]).double() / n
    stderr = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert ((freq - probs.double()).abs() <= 5 * stderr + 1e-12).all()


def test_gradient_training_reaches_the_closed_form_optimum():
    x, _ = _data()
    cfg = TrainConfig(family="independent", steps=400, batch_size=400, lr=0.1, ema_decay=0.0,
                      eval_every=1000, log_every=1000, checkpoint_every=1000, patience=0)
    model = registry.build("independent", {}, 5, (1, 2, 3))
    Trainer(cfg, runtime.setup("cpu"), model, x, None, progress=False).run()
    with torch.no_grad():
        got = float(model.bound(x).nats.double().mean())
    optimum = _empirical_nll(x, 5)
    assert optimum <= got + 1e-6, "nothing beats the maximum-likelihood optimum on its own data"
    assert got - optimum < 1e-3 * max(1.0, optimum)


def test_continuous_gaussian_is_exact():
    torch.manual_seed(0)
    model = registry.build("independent", {}, None, (3,))
    with torch.no_grad():
        model.mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        model.log_scale.copy_(torch.tensor([0.0, 0.3, -0.2]))
    x = torch.randn(7, 3)
    dist = torch.distributions.Normal(model.mean, model.log_scale.exp())
    torch.testing.assert_close(model.bound(x).nats, -dist.log_prob(x).sum(-1).detach())
    s = model.sample(50000, generator=torch.Generator().manual_seed(0))
    assert (s.mean(0) - model.mean).abs().max() < 5 * math.exp(0.3) / math.sqrt(50000)
