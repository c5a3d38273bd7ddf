"""Batched samplers (sample.batches) against oracles: DDIM with eta = 0 gives the same samples in any
batching (its only randomness, x_T, is drawn up front); one batch is the model's own loop, bitwise;
the bar's total is the number of net calls actually made (counted on the net); bf16 autocast runs the
net in bf16 and still returns levels in range; the VDM's one step matches q(z_s | z_t, x_hat) written
from the paper; and the precision a device cannot run is refused in one sentence."""

import pytest
import torch
from torch import nn

from lowerbound.errors import UserError
from lowerbound.models import build, work
from lowerbound.models.diffusion.vdm import VDM, VDMConfig
from lowerbound.sample import ancestral, ddim
from lowerbound.sample.ancestral import net_calls
from lowerbound.train import runtime
from lowerbound.train.inspect import check_precision

K, SHAPE = 17, (1, 8, 8)
DDPM = {"net": "mlp", "timesteps": 12, "mlp": {"width": 16, "depth": 1, "emb_dim": 8}}
VDM_OPTIONS = {"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8, "sample_steps": 7}


class Counting(nn.Module):
    """The net, counting its calls and keeping the dtype of its last output."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.dtype = inner, 0, None

    def forward(self, *args):
        out = self.inner(*args)
        self.calls += 1
        self.dtype = out.dtype
        return out


def _model(family):
    torch.manual_seed(0)
    m = build(family, DDPM if family == "diffusion" else VDM_OPTIONS, K, SHAPE)
    m.net = Counting(m.net)
    return m


def _g(seed=5):
    return torch.Generator().manual_seed(seed)


def test_ddim_without_noise_does_not_depend_on_the_batching():
    m = _model("diffusion")
    whole = ddim(m, 7, steps=5, eta=0.0, generator=_g(), progress=False, batch_size=7)
    parts = ddim(m, 7, steps=5, eta=0.0, generator=_g(), progress=False, batch_size=3)
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("family", ["diffusion", "vdm"])
def test_one_batch_is_the_models_own_loop_and_results_are_normal_tensors(family):
    m = _model(family).eval()
    with torch.no_grad():
        own = m.sample(6, _g())
    out = ancestral(m, 6, generator=_g(), progress=False, batch_size=6)
    assert torch.equal(own, out) and not out.is_inference()


@pytest.mark.parametrize("family", ["diffusion", "vdm"])
def test_the_bar_counts_the_net_calls_made(family, monkeypatch):
    m = _model(family)
    reports = []
    real = work.metered
    monkeypatch.setattr(work, "metered", lambda report: real(lambda f: (reports.append(f), report(f))))
    ancestral(m, 5, generator=_g(), progress=True, batch_size=2)  # 3 batches
    assert m.net.calls == 3 * net_calls(m)
    assert len(reports) == m.net.calls and reports[-1] == 1.0  # one tick per call, planned exactly


def test_ddim_bar_counts_the_net_calls_made(monkeypatch):
    m = _model("diffusion")
    reports = []
    real = work.metered
    monkeypatch.setattr(work, "metered", lambda report: real(lambda f: (reports.append(f), report(f))))
    ddim(m, 5, steps=4, generator=_g(), progress=True, batch_size=2)
    assert m.net.calls == len(reports) == 3 * 4 and reports[-1] == 1.0


@pytest.mark.parametrize("family", ["diffusion", "vdm"])
def test_bf16_runs_the_net_in_bf16_and_returns_levels_in_range(family):
    m = _model(family)
    out = ancestral(m, 9, generator=_g(), progress=False, batch_size=4, precision="bf16")
    assert m.net.dtype == torch.bfloat16
    assert out.dtype == torch.long and out.shape == (9, *SHAPE)
    assert int(out.min()) >= 0 and int(out.max()) <= K - 1
    ancestral(m, 2, generator=_g(), progress=False, precision="fp32")
    assert m.net.dtype == torch.float32
    if family == "diffusion":
        out = ddim(m, 9, steps=4, generator=_g(), progress=False, batch_size=4, precision="bf16")
        assert out.dtype == torch.long and int(out.min()) >= 0 and int(out.max()) <= K - 1


def test_vdm_one_step_is_the_posterior_of_z_s_given_z_t_and_x_hat():
    """One step, t = 1 to s = 0, on continuous data with a fixed denoiser guess x_hat(z) = 0.3 z:
    z_s = mean + std * noise with q(z_s | z_t, x) of Kingma et al. 2021 eq. (3)-(4), alpha_{t|s} =
    alpha_t / alpha_s, sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2; the output is z_0 / alpha_0."""
    f64 = torch.float64

    class Guess(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c

        def forward(self, z, t):  # eps_hat = (z - alpha x_hat) / sigma
            gamma = self.c.gamma_min + t * (self.c.gamma_max - self.c.gamma_min)
            a, s = torch.sigmoid(-gamma).sqrt()[:, None], torch.sigmoid(gamma).sqrt()[:, None]
            return (z - a * 0.3 * z) / s

    config = VDMConfig(gamma_min=-4.0, gamma_max=3.0, fourier=(), schedule="linear", sample_steps=1)
    m = VDM(config, levels=None, shape=(3,), net=Guess(config.resolved(None))).double()
    out = ancestral(m, 4, generator=_g(1), progress=False)
    g = _g(1)
    z_t, noise = torch.randn((4, 3), generator=g, dtype=f64), torch.randn((4, 3), generator=g, dtype=f64)
    gam = torch.tensor([-4.0, 3.0], dtype=f64)
    (a_s, a_t), (s_s, s_t) = torch.sigmoid(-gam).sqrt(), torch.sigmoid(gam).sqrt()
    a_ts = a_t / a_s
    s2_ts = s_t ** 2 - a_ts ** 2 * s_s ** 2
    mean = a_ts * s_s ** 2 / s_t ** 2 * z_t + a_s * s2_ts / s_t ** 2 * (0.3 * z_t)
    z_s = mean + (s2_ts * s_s ** 2 / s_t ** 2).sqrt() * noise
    torch.testing.assert_close(out, z_s / a_s, rtol=1e-9, atol=1e-9)


def test_a_precision_the_device_cannot_run_is_one_sentence(monkeypatch):
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(UserError, match="Unknown precision"):
        check_precision("fp8", torch.device("cpu"))
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: None)
    with pytest.raises(UserError, match="bfloat16 instructions"):
        check_precision("bf16", torch.device("cpu"))
    check_precision("fp32", torch.device("cpu"))
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        ancestral(_model("vdm"), 2, progress=False, precision="fp16")
