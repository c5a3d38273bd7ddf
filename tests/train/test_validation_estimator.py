"""The diffusion family's validation number (train.scoring.score with the model's validation_estimator,
importance-sampled timesteps since benchmarks/ddpm_validation_estimator.py) is a deterministic
function of the seed: the same seed gives the same bits, another seed other draws."""

import torch

from lowerbound.models import build
from lowerbound.train.scoring import score


def test_validation_is_a_deterministic_function_of_the_seed():
    torch.manual_seed(0)
    m = build("diffusion", {"timesteps": 30, "mlp": {"width": 16, "depth": 1, "emb_dim": 8}}, 17, (1, 8, 8))
    x = torch.randint(0, 17, (10, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    est, k = m.validation_estimator
    a, b, c = (score(m, x, 4, seed, torch.device("cpu"), estimator=est, samples=k) for seed in (7, 7, 8))
    assert a.estimator == f"vlb-{est}-k={k}"
    assert torch.equal(a.nats, b.nats) and not torch.equal(a.nats, c.nats)
