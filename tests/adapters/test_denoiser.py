"""adapters.from_denoiser: our own trained-shape model's net, handed over as a foreign denoiser with its
schedule, gives back our model's bound exactly (the identity oracle), whichever way the schedule is
given (betas or alpha_bar) and whichever time convention the net speaks."""

from __future__ import annotations

import pytest
import torch

from lowerbound.adapters import from_denoiser
from lowerbound.adapters.denoiser import NetTime
from lowerbound.errors import UserError
from lowerbound.models import registry

K, T = 9, 12


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    return registry.build("diffusion", {"timesteps": T, "schedule": "cosine", "parameterization": "v",
                                        "variance": "learned_range", "net": "mlp",
                                        "mlp": {"width": 32, "emb_dim": 8, "dropout": 0.0}},
                          K, (1, 3, 3)).eval()


def bound(model, x):
    with torch.no_grad():
        return model.bound(x, generator=torch.Generator().manual_seed(3)).nats


@pytest.mark.parametrize("time", ["unit", "step", "index"])
def test_own_net_as_a_foreign_denoiser_gives_our_bound(ours, time):
    x = torch.randint(0, K, (4, 1, 3, 3), generator=torch.Generator().manual_seed(1))

    def foreign(x_t, s):  # a plain function speaking `time`: convert back to our t = i / T
        if time != "unit":
            assert s.dtype == torch.long and int(s.min()) >= (0 if time == "index" else 1)
        t = {"unit": s, "step": s / T, "index": (s + 1) / T}[time]
        return ours.net(x_t, t.to(x_t.dtype))

    betas = ours.schedule.betas[1:]
    for schedule in ({"betas": betas}, {"alpha_bar": ours.schedule.alpha_bar[1:]}):
        adapted = from_denoiser(foreign, shape=(1, 3, 3), levels=K, prediction="v", variance="learned_range",
                                time=time, **schedule)
        torch.testing.assert_close(bound(adapted, x), bound(ours, x), rtol=1e-6, atol=0)


def test_time_between_steps_is_a_float_on_the_nets_scale():
    seen = []
    net = NetTime(lambda x, s: seen.append(s) or x, timesteps=10, time="index")
    net(torch.zeros(2, 1), torch.tensor([0.3, 1.0]))
    net(torch.zeros(2, 1), torch.tensor([0.35, 1.0]))
    assert seen[0].dtype == torch.long and seen[0].tolist() == [2, 9]
    assert seen[1].is_floating_point() and seen[1].tolist() == pytest.approx([2.5, 9.0])


def test_bad_schedules_and_names_are_one_sentence():
    net = torch.nn.Identity()
    with pytest.raises(UserError, match="exactly one"):
        from_denoiser(net, shape=(2,), levels=K)
    with pytest.raises(UserError, match="exactly one"):
        from_denoiser(net, shape=(2,), levels=K, betas=[0.1], alpha_bar=[0.9])
    with pytest.raises(UserError, match="alpha_bar"):
        from_denoiser(net, shape=(2,), levels=K, alpha_bar=[0.9, 1.2])
    with pytest.raises(UserError, match="outside"):
        from_denoiser(net, shape=(2,), levels=K, betas=[0.1, 1.0])
    with pytest.raises(UserError, match="prediction"):
        from_denoiser(net, shape=(2,), levels=K, betas=[0.1], prediction="epsilon")
    with pytest.raises(UserError, match="time"):
        from_denoiser(net, shape=(2,), levels=K, betas=[0.1], time="seconds")


def test_missing_diffusers_is_one_sentence_naming_the_extra(tmp_path, monkeypatch, capsys):
    """Runs without diffusers installed too (CI's minimal install): its absence is simulated."""
    import sys

    from lowerbound import cli
    from lowerbound.adapters import load_diffusers
    from lowerbound.adapters._optional import EXTRA

    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    (tmp_path / "scheduler_config.json").write_text('{"_class_name": "DDPMScheduler"}')
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers raises ImportError
    with pytest.raises(UserError) as e:
        load_diffusers(tmp_path, levels=K)
    assert str(e.value).endswith(f"install it with {EXTRA}.") and "diffusers" in str(e.value)
    assert cli.main(["eval", "--diffusers", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{EXTRA}.")
