"""EMA: the shadow follows the recursion s <- d s + (1 - d) theta with the warm-up rate, in fp32."""

import torch
from torch import nn

from lowerbound.train.ema import EMA


def test_matches_the_recursion():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    expected = model.weight.detach().double().clone()
    for n in range(30):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach().double()
        ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"].double(), expected, rtol=1e-5, atol=1e-6)
    state = ema.state_dict_for(model)
    assert set(state) == set(model.state_dict())
    other = EMA(model, 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 30 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
