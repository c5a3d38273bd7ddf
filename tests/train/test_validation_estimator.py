"""The diffusion families' validation number (train.scoring.score with the model's validation_estimator,
importance-sampled timesteps since benchmarks/ddpm_validation_estimator.py) is a deterministic
function of the seed: the same seed gives the same bits, another seed other draws."""

import pytest
import torch

from lowerbound.models import build
from lowerbound.train.scoring import score


@pytest.mark.parametrize("family, options, name", [
    ("diffusion", {"net": "mlp", "timesteps": 30, "mlp": {"width": 16, "depth": 1, "emb_dim": 8}},
     "vlb-is-k=32"),
    ("vdm", {"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8}, "vdm-lds-k=16")])
def test_validation_is_a_deterministic_function_of_the_seed(family, options, name):
    torch.manual_seed(0)
    m = build(family, options, 17, (1, 8, 8))
    x = torch.randint(0, 17, (10, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    est, k = m.validation_estimator
    a, b, c = (score(m, x, 4, seed, torch.device("cpu"), estimator=est, samples=k) for seed in (7, 7, 8))
    assert a.estimator == name
    assert torch.equal(a.nats, b.nats) and not torch.equal(a.nats, c.nats)
