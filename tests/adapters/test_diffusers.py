"""adapters.from_diffusers against two oracles: our own Diffusion given the same UNet (called at diffusers'
timestep s = i - 1) and the same betas, per example to 1e-6 relative; and diffusers' own
DDPMScheduler.step, whose x0 and x_{t-1} (same noise) our reverse step must reproduce, for every
prediction type and variance type.  An off-by-one time convention is shown to move the bound."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lowerbound.adapters import from_denoiser, from_diffusers
from lowerbound.errors import UserError
from lowerbound.models.diffusion import Diffusion, Schedule

diffusers = pytest.importorskip("diffusers")

K, T = 17, 20
PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VARIANCES = ("fixed_small", "fixed_large", "learned_range")


def tiny_unet(out_channels: int = 1, seed: int = 0) -> nn.Module:
    """An 8x8 UNet2DModel with random weights (each parameter jittered so no layer is an identity)."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=out_channels,
                                 block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet.eval()


def scheduler(prediction: str, variance: str, clip: bool = False):
    return diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2",
                                   prediction_type=prediction, variance_type=variance, clip_sample=clip)


class AtIndex(nn.Module):
    """The reference wiring, written out: our t = i / T -> diffusers' timestep i - 1."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        return self.unet(x, (t.double() * T).round().long() - 1).sample


def data(n: int = 3) -> torch.Tensor:
    x = torch.randint(0, K, (n, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    x[0, 0, 0, :2] = torch.tensor([0, K - 1])  # both outer bins of the decoder
    return x


def bound(model, x, seed=7):
    with torch.no_grad():
        return model.bound(x, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_bound_equals_our_diffusion_with_the_same_net_and_schedule(prediction, variance):
    unet = tiny_unet(2 if variance == "learned_range" else 1)
    sched = scheduler(prediction, variance)
    adapted = from_diffusers(unet, sched, levels=K)
    ours = Diffusion(AtIndex(unet), levels=K, shape=(1, 8, 8), schedule=Schedule(sched.betas),
                     parameterization=PREDICTIONS[prediction], variance=variance,
                     loss="hybrid" if variance == "learned_range" else "simple")
    x = data()
    a, b = bound(adapted, x), bound(ours, x)
    assert a.estimator == b.estimator == f"vlb-T={T}"
    for name in ("prior", "diffusion", "reconstruction"):
        torch.testing.assert_close(a.terms[name], b.terms[name], rtol=1e-6, atol=0)
    # the same comparison catches a time convention off by one: the net then sees step i, not i - 1
    shifted = from_denoiser(unet, shape=(1, 8, 8), levels=K, betas=sched.betas,
                            prediction=PREDICTIONS[prediction], variance=variance, time="step")
    gap = (bound(shifted, x).nats - b.nats).abs() / b.nats
    assert float(gap.max()) > 1e-4


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_reverse_step_is_diffusers_step(prediction, variance):
    """Our p(x_{i-1} | x_i) at i = s + 1 against DDPMScheduler.step at timestep s, with the same noise:
    x0 and x_{s-1} agree to float32 precision; at s = 0 diffusers returns the mean (no noise)."""
    unet = tiny_unet(2 if variance == "learned_range" else 1, seed=3)
    sched = scheduler(prediction, variance, clip=True)
    adapted = from_diffusers(unet, sched, levels=K)
    assert adapted.clip_x0  # DDPMScheduler clips x0 by default, and so does the adapted bound
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 1.5
    for s in (0, 1, 9, T - 1):
        with torch.no_grad():
            out = unet(x_t, s).sample
            theirs = sched.step(out, s, x_t, generator=torch.Generator().manual_seed(5))
            mine = adapted.predict(x_t, torch.full((2,), s + 1, dtype=torch.long))
        torch.testing.assert_close(mine["x0"].float(), theirs.pred_original_sample, rtol=1e-4, atol=1e-5)
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5)).double()
        prev = mine["mean"] + (torch.exp(0.5 * mine["logvar"]) * noise if s > 0 else 0.0)
        torch.testing.assert_close(prev.float(), theirs.prev_sample, rtol=1e-4, atol=1e-5)


def test_ddim_scheduler_and_overrides():
    unet = tiny_unet()
    ddim = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear",
                                   prediction_type="v_prediction", clip_sample=False)
    model = from_diffusers(unet, ddim, levels=K)
    assert (model.parameterization, model.variance, model.clip_x0) == ("v", "fixed_small", False)
    model = from_diffusers(unet, ddim, levels=K, variance="fixed_large", clip_x0=True)
    assert (model.variance, model.clip_x0) == ("fixed_large", True)
    torch.testing.assert_close(model.schedule.alpha_bar[1:], ddim.alphas_cumprod.double(), rtol=1e-6, atol=0)
    assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


def test_unsupported_scheduler_settings_are_one_sentence():
    unet = tiny_unet()
    with pytest.raises(UserError, match="learned"):
        from_diffusers(unet, scheduler("epsilon", "learned"), levels=K)
    with pytest.raises(UserError, match="thresholding"):
        from_diffusers(unet, diffusers.DDPMScheduler(num_train_timesteps=T, thresholding=True), levels=K)
    with pytest.raises(UserError, match="clip_x0"):
        from_diffusers(unet, diffusers.DDPMScheduler(num_train_timesteps=T, clip_sample_range=2.0), levels=K)
    with pytest.raises(UserError, match="scheduler"):
        from_diffusers(unet, object(), levels=K)
