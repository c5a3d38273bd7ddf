"""precision "auto": bf16 where the device computes in bfloat16 natively, fp32 elsewhere; the Trainer
runs the precision it resolves (autocast dtype, no GradScaler), and the explicit names pass through."""

import pytest
import torch

from lowerbound.models import registry
from lowerbound.train import runtime
from lowerbound.train.loop import Trainer

from .test_loop import _cfg

CPU = torch.device("cpu")


@pytest.mark.parametrize("flag, expect", [("avx512_bf16", "bf16"), ("amx_bf16", "bf16"), (None, "fp32")])
def test_auto_follows_the_cpu_instructions(monkeypatch, flag, expect):
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: flag)
    assert runtime.resolve_precision("auto", CPU) == expect
    for name in ("fp32", "bf16", "fp16"):
        assert runtime.resolve_precision(name, CPU) == name
    assert runtime.resolve_precision("auto", torch.device("mps")) == "fp32"


@pytest.mark.parametrize("flag", ["avx512_bf16", None])
def test_trainer_autocasts_at_the_resolved_precision(monkeypatch, flag):
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: flag)
    torch.manual_seed(0)
    model = registry.build("vae", {"hidden": [8], "latent_dim": 2}, 17, (4,))
    x = torch.randint(0, 17, (32, 4))
    t = Trainer(_cfg(family="vae", steps=2, batch_size=8, precision="auto"), runtime.Runtime(CPU), model, x,
                None, progress=False)
    assert t.precision == ("bf16" if flag else "fp32") and t.state.scaler is None
    with t._autocast():
        dtype = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype
    assert dtype == (torch.bfloat16 if flag else torch.float32)


@pytest.mark.parametrize("flag", ["avx512_bf16", None])
def test_the_run_reports_the_precision_it_used(monkeypatch, tmp_path, flag):
    """precision auto is resolved once, and the result and report.md name what ran, not "auto"."""
    from lowerbound.train import run

    monkeypatch.setattr(runtime, "cpu_bf16", lambda: flag)
    cfg, run_dir = run.configure("independent", [{"steps": 2, "eval_every": 2, "precision": "auto"}], [],
                                 str(tmp_path / "r"), False)
    out = run.train(cfg, run_dir, progress=False)
    used = "bf16" if flag else "fp32"
    assert out["precision"] == used
    assert f"{used} (auto)" in (run_dir / "report.md").read_text()
