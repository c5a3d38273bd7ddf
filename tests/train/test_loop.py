"""The loop in one process: exact continuation from a saved state, data order, NaN guard, patience."""

import pytest
import torch

from lowerbound import errors as lowerbound_errors
from lowerbound.io import checkpoint
from lowerbound.models import registry
from lowerbound.models.independent import Independent, IndependentConfig
from lowerbound.train import run, runtime
from lowerbound.train.config import resolve
from lowerbound.train.guards import TrainingDiverged
from lowerbound.train.loop import Trainer, batch_indices


def _x(n=300, seed=0):
    return torch.randint(0, 5, (n, 1, 2, 3), generator=torch.Generator().manual_seed(seed))


def _cfg(**kw):
    base = dict(family="independent", steps=40, batch_size=32, lr=0.05, eval_every=10, log_every=5,
                checkpoint_every=10, patience=0)
    return resolve(base, kw)


def test_every_example_once_per_epoch_and_ranks_split_the_global_batch():
    n, b = 100, 20
    epoch = torch.cat([batch_indices(n, b, seed=3, step=s) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(n))
    assert not torch.equal(batch_indices(n, b, 3, 0), batch_indices(n, b, 3, 5)), "fresh order per epoch"
    idx = batch_indices(n, b, 3, 7)
    assert sorted(torch.cat([idx[0::2], idx[1::2]]).tolist()) == sorted(idx.tolist())


def test_continuing_from_a_saved_state_is_bitwise_identical():
    x, valid = _x(), _x(60, 1)
    rt = runtime.setup("cpu")
    torch.manual_seed(0)
    straight = Trainer(_cfg(), rt, registry.build("independent", {"init_scale": 0.1}, 5, (1, 2, 3)),
                       x, valid, progress=False)
    straight.run()

    torch.manual_seed(0)
    first = Trainer(_cfg(steps=17), rt, registry.build("independent", {"init_scale": 0.1}, 5, (1, 2, 3)),
                    x, valid, progress=False)
    first.run()
    saved = first.state.state_dict()
    torch.manual_seed(123)  # a fresh process: different initial weights, overwritten by the state
    second = Trainer(_cfg(), rt, registry.build("independent", {"init_scale": 0.1}, 5, (1, 2, 3)),
                     x, valid, progress=False)
    second.state.load_state_dict(saved)
    second.run()
    a, b = straight.state.state_dict(), second.state.state_dict()
    assert torch.equal(a["model"]["logits"], b["model"]["logits"])
    assert torch.equal(a["ema"]["shadow"]["logits"], b["ema"]["shadow"]["logits"])
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert (a["best_step"], a["best_value"]) == (b["best_step"], b["best_value"])


class _NanAt(Independent):
    """Independent model whose loss turns NaN at a given call (a diverging run)."""

    nan_call = 25

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def loss(self, x, *, generator=None):
        b = self.bound(x)
        self.calls += 1
        if self.calls > self.nan_call:
            b.terms["nll"] = b.terms["nll"] * float("nan")
        return b


registry.register("test-nan", IndependentConfig)(lambda c, levels, shape: _NanAt(c, levels, shape))


def test_non_finite_loss_stops_with_one_message_and_keeps_the_last_checkpoint(tmp_path):
    cfg = resolve({"family": "test-nan", "steps": 60, "batch_size": 64, "lr": 0.1, "eval_every": 10,
                   "checkpoint_every": 10, "log_every": 5, "num_samples": 0})
    with pytest.raises(TrainingDiverged) as err:
        run.train(cfg, tmp_path / "r", progress=False)
    msg = str(err.value)
    assert "step 25" in msg and "nll = nan" in msg and "smaller learning rate" in msg
    assert "step-00000020.pt" in msg
    state = checkpoint.load_latest(tmp_path / "r" / "checkpoints")
    assert state["step"] == 20 and torch.isfinite(state["model"]["logits"]).all()
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_patience_stops_early_and_best_is_kept(tmp_path):
    # a huge learning rate overshoots: validation stops improving, patience ends the run
    cfg = resolve({"family": "independent", "steps": 400, "batch_size": 64, "lr": 3.0, "ema_decay": 0.0,
                   "eval_every": 5, "checkpoint_every": 50, "log_every": 5, "patience": 2,
                   "num_samples": 0, "valid_fraction": 0.2})
    result = run.train(cfg, tmp_path / "r", progress=False)
    assert result["stopped"] == "patience" and result["steps"] < 400
    best = checkpoint.load(tmp_path / "r" / "checkpoints" / "best.pt")
    rows = run.metrics_rows(tmp_path / "r")
    valid = [(int(r["step"]), float(r["valid_bpd"])) for r in rows if r["valid_bpd"]]
    assert best["step"] == min(valid, key=lambda sv: sv[1])[0]
    assert result["splits"]["valid"]["bits_per_dim"] == pytest.approx(min(v for _, v in valid), rel=1e-5)


def test_bf16_autocast_keeps_fp32_master_weights_and_fp16_needs_a_gpu():
    x = _x()
    rt = runtime.setup("cpu")
    results = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = registry.build("independent", {"init_scale": 0.1}, 5, (1, 2, 3))
        t = Trainer(_cfg(precision=precision, steps=20), rt, model, x, None, progress=False)
        t.run()
        assert model.logits.dtype == torch.float32 and t.state.ema.shadow["logits"].dtype == torch.float32
        results[precision] = model.logits.detach().clone()
    # bf16 keeps 8 bits of mantissa: the two runs agree to bf16 precision
    torch.testing.assert_close(results["bf16"], results["fp32"], rtol=0.0, atol=0.05)
    with pytest.raises(lowerbound_errors.UserError, match="fp16 needs a GPU"):
        Trainer(_cfg(precision="fp16"), rt, registry.build("independent", {}, 5, (1, 2, 3)), x, None)


def test_time_budget_stops_the_run():
    x = _x()
    cfg = _cfg(steps=10**9, minutes=0.0005)  # 30 ms
    t = Trainer(cfg, runtime.setup("cpu"), registry.build("independent", {}, 5, (1, 2, 3)), x, None,
                progress=False)
    assert t.run() == "minutes" and 0 < t.state.step < 10**9


def test_a_models_param_groups_scale_the_learning_rate():
    """VDM asks a 10x step for its noise schedule: the optimizer's groups carry it at every step."""
    model = registry.build("vdm", {"net": "mlp", "width": 16, "depth": 1, "schedule_hidden": 8}, 17, (4,))
    x = torch.randint(0, 17, (64, 4), generator=torch.Generator().manual_seed(0))
    cfg = resolve(dict(family="vdm", steps=2, batch_size=16, lr=2e-3, eval_every=2, ema_decay=0.0,
                       patience=0), {})
    trainer = Trainer(cfg, runtime.setup("cpu"), model, x, None, progress=False)
    before = [p.detach().clone() for p in model.schedule.parameters()]
    trainer.run()
    groups = trainer.state.optimizer.param_groups
    assert [g["lr"] for g in groups] == [2e-3, 2e-2]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.schedule.parameters()}
    assert groups[1]["weight_decay"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.schedule.parameters()))
