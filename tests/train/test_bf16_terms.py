"""bf16 autocast (--precision bf16) rounds the nets' arithmetic, not the bound: the diffusion families'
training terms under CPU autocast are float32 or wider and equal the fp32 terms to bf16 precision."""

import pytest
import torch

from lowerbound.models import registry
from lowerbound.train import runtime

MODELS = [("vdm", {"unet": {"channels": 8}}), ("vdm", {"net": "mlp", "width": 32, "depth": 1}),
          ("diffusion", {"net": "unet", "unet": {"channels": 8}, "timesteps": 50}),
          ("diffusion", {"net": "mlp", "mlp": {"width": 32}, "timesteps": 50})]


@pytest.mark.skipif(runtime.cpu_bf16() is None, reason="this CPU has no bfloat16 instructions")
@pytest.mark.parametrize("family, options", MODELS)
def test_terms_under_bf16_autocast_are_wide_and_match_fp32(family, options):
    torch.manual_seed(0)
    model = registry.build(family, options, 17, (1, 8, 8))
    with torch.no_grad():  # the nets' output layers start at zero: give them something to round
        for p in model.net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.randint(0, 17, (64, 1, 8, 8), generator=torch.Generator().manual_seed(1))

    def terms(autocast: bool) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model.loss(x, generator=torch.Generator().manual_seed(2)).terms

    fp32, bf16 = terms(False), terms(True)
    assert set(fp32) == set(bf16)
    for name, t in bf16.items():
        assert t.dtype in (torch.float32, torch.float64), f"{name} is {t.dtype} under autocast"
        # bf16 keeps 8 bits of mantissa: batch means agree to a few parts in a thousand
        torch.testing.assert_close(t.mean(), fp32[name].to(t.dtype).mean(), rtol=2e-2, atol=1e-3)
    assert any(not torch.equal(bf16[k], fp32[k]) for k in fp32), "autocast rounded nothing"
