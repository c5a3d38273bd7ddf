"""The loop's speed options (issue 16) change how, never what: fused AdamW against foreach, clipping on
the device against torch.nn.utils.clip_grad_norm_, the finite check at metric rows against every step,
channels-last and compiled nets against eager contiguous ones, and the options' refusals."""

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.io import checkpoint
from lowerbound.models import registry
from lowerbound.models.independent import IndependentConfig
from lowerbound.train import run, runtime
from lowerbound.train.config import resolve
from lowerbound.train.guards import TrainingDiverged
from lowerbound.train.loop import Trainer

from .test_loop import _cfg, _NanAt

VDM_MLP = {"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8}


class _NanGradAt(_NanAt):
    """From call 26 on, a finite loss whose gradient is NaN: d sqrt(0 * l) / dl = 0 * inf."""

    def loss(self, x, *, generator=None):
        b = self.bound(x)
        self.calls += 1
        if self.calls > self.nan_call:
            b.terms["nll"] = b.terms["nll"] + torch.sqrt(0.0 * self.logits.sum())
        return b


registry.register("test-nan-grad", IndependentConfig)(
    lambda c, levels, shape: _NanGradAt(c, levels, shape))


def _vdm_trainer(**loop):
    torch.manual_seed(0)
    model = registry.build("vdm", VDM_MLP, 17, (4,))
    x = torch.randint(0, 17, (64, 4), generator=torch.Generator().manual_seed(0))
    cfg = resolve(dict(family="vdm", steps=6, batch_size=16, lr=2e-3, eval_every=100, ema_decay=0.9,
                       patience=0, log_every=3), loop)
    return Trainer(cfg, runtime.setup("cpu"), model, x, None, progress=False)


def _params(t: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in t.model.parameters()]


@pytest.mark.skipif(not runtime.fused_adamw("cpu"), reason="this torch has no fused AdamW on the CPU")
def test_fused_adamw_makes_the_same_updates_as_foreach():
    fused, foreach = _vdm_trainer(fused_adamw=True), _vdm_trainer(fused_adamw=False)
    assert fused.state.optimizer.param_groups[0]["fused"] is True
    assert foreach.state.optimizer.param_groups[0]["foreach"] is True
    for t in (fused, foreach):
        t.run()
    for a, b in zip(_params(fused), _params(foreach)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(_params(fused), _params(_vdm_trainer()))), "trained"


def test_a_resumed_state_keeps_this_runs_adamw_implementation():
    saved = _vdm_trainer(fused_adamw=True)
    saved.run()
    t = _vdm_trainer(fused_adamw=False)
    t.state.load_state_dict(saved.state.state_dict())
    group = t.state.optimizer.param_groups[0]
    assert group["foreach"] is True and not group["fused"]
    assert all(s["step"].device.type == "cpu" for s in t.state.optimizer.state.values())
    t.cfg = resolve(t.cfg.to_dict(), {"steps": 9})
    t.run()
    assert t.state.step == 9


def test_clipping_on_the_device_matches_clip_grad_norm():
    t = _vdm_trainer()
    g = torch.Generator().manual_seed(1)
    for scale, max_norm in ((10.0, 1.0), (1e-3, 1.0), (1.0, 0.0)):
        grads = [scale * torch.randn(p.shape, generator=g) for p in t.params]
        ref = [gr.clone().requires_grad_() for gr in grads]
        for r, gr in zip(ref, grads):
            r.grad = gr.clone()
        for p, gr in zip(t.params, grads):
            p.grad = gr.clone()
        norm = t._clip(max_norm)
        expect = torch.nn.utils.clip_grad_norm_(ref, max_norm if max_norm > 0 else float("inf"))
        torch.testing.assert_close(norm, expect)
        for p, r in zip(t.params, ref):
            torch.testing.assert_close(p.grad, r.grad)


@pytest.mark.parametrize("family, log_every, finite_check, what", [
    ("test-nan", 50, "logged", r"the loss term\(s\) nll"),
    ("test-nan", 5, "every_step", r"the loss term\(s\) nll"),
    ("test-nan-grad", 50, "logged", "the gradient norm")])
def test_a_non_finite_step_is_named_and_never_saved(tmp_path, family, log_every, finite_check, what):
    """The loss (or only its gradient) turns NaN at step 25; rows are checked at step 30 (the next
    checkpoint and evaluation) or every step: the message names step 25 either way, and the last
    checkpoint is step 20's, finite."""
    cfg = resolve({"family": family, "steps": 60, "batch_size": 64, "lr": 0.1, "eval_every": 10,
                   "checkpoint_every": 10, "log_every": log_every, "num_samples": 0,
                   "finite_check": finite_check})
    with pytest.raises(TrainingDiverged, match=f"at step 25: {what} became non-finite"):
        run.train(cfg, tmp_path / "r", progress=False)
    state = checkpoint.load_latest(tmp_path / "r" / "checkpoints")
    assert state["step"] == 20 and torch.isfinite(state["model"]["logits"]).all()


def test_checking_every_step_trains_bitwise_the_same():
    a, b = _vdm_trainer(finite_check="every_step"), _vdm_trainer()
    for t in (a, b):
        t.run()
    assert a.state.step == b.state.step == 6
    for pa, pb in zip(_params(a), _params(b)):
        assert torch.equal(pa, pb)


def test_channels_last_trains_the_same_net():
    def trainer(channels_last):
        torch.manual_seed(0)
        unet = {"channels": 8, "attention_resolutions": []}
        model = registry.build("diffusion", {"net": "unet", "unet": unet, "timesteps": 20}, 5, (1, 4, 4))
        cfg = _cfg(family="diffusion", steps=3, batch_size=8, lr=1e-3, channels_last=channels_last)
        x = torch.randint(0, 5, (40, 1, 4, 4), generator=torch.Generator().manual_seed(0))
        return Trainer(cfg, runtime.setup("cpu"), model, x, None, progress=False)

    plain, cl = trainer(False), trainer(True)
    convs = [p for p in cl.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for t in (plain, cl):  # one step: its loss terms and gradients (Adam would magnify rounding)
        t.train_step()
    torch.testing.assert_close(plain._rows[0][1], cl._rows[0][1], rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.model.parameters(), cl.model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4 * float(a.grad.abs().max()))


def test_compile_falls_back_to_eager_when_the_compiler_fails(monkeypatch, capsys):
    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return call

    eager = _vdm_trainer()
    eager.run()
    monkeypatch.setattr(torch, "compile", broken)
    t = _vdm_trainer(compile=True)
    t.run()
    assert "compiled net failed at its first step (no C++ compiler found); training eagerly" in \
        capsys.readouterr().err
    assert not t.compiled and "forward" not in vars(t.model.net)
    for a, b in zip(_params(eager), _params(t)):
        assert torch.equal(a, b)  # the failed first step was replayed from the same seeds


def test_a_compiled_net_trains_like_the_eager_one_and_evaluation_stays_eager(monkeypatch):
    original = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: original(fn, backend="eager"))  # no C++ build
    eager = _vdm_trainer()
    eager.run()
    t = _vdm_trainer(compile=True)
    assert t.compiled and "forward" in vars(t.model.net) and "forward" not in vars(t.eval_model.net)
    t.run()
    for a, b in zip(_params(eager), _params(t)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    t.eager()
    assert "forward" not in vars(t.model.net)


@pytest.mark.parametrize("key, value, words", [("compile", "maybe", "compile"),
                                               ("finite_check", "sometimes", "finite_check"),
                                               ("fused_adamw", 1, "fused_adamw"),
                                               ("channels_last", "yes", "channels_last")])
def test_bad_speed_options_are_one_sentence(key, value, words):
    with pytest.raises(UserError, match=words) as err:
        resolve({"family": "vdm", key: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("before", [False, True])
def test_train_restores_the_flush_denormal_setting(tmp_path, before):
    """run.train flushes denormals while it runs (runtime.flush_denormals), then restores the caller's
    setting, whether it returns or raises."""
    torch.set_flush_denormal(before)
    try:
        seen = []
        original = runtime.flush_denormals
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runtime, "flush_denormals",
                       lambda d: (original(d), seen.append(runtime.denormals_flushed()))[0])
            run.train(resolve({"family": "independent", "steps": 5, "num_samples": 0}), tmp_path / "ok",
                      progress=False)
            assert seen == [True] and runtime.denormals_flushed() is before
            cfg = resolve({"family": "test-nan", "steps": 40, "batch_size": 64, "num_samples": 0})
            with pytest.raises(TrainingDiverged):
                run.train(cfg, tmp_path / "nan", progress=False)
        assert runtime.denormals_flushed() is before
    finally:
        torch.set_flush_denormal(False)
