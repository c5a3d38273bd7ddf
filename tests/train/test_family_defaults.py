"""A family's own loop defaults (registry train_defaults) sit between the loop's defaults and the user's."""

import pytest

from lowerbound.models import registry
from lowerbound.train import run
from lowerbound.train.config import TrainConfig


def test_family_defaults_replace_the_loops_and_yield_to_the_user(tmp_path):
    own = registry.get("autoregressive").train_defaults
    assert own["batch_size"] != TrainConfig().batch_size
    cfg, _ = run.configure("autoregressive", [], [], str(tmp_path / "a"), False)
    assert (cfg.batch_size, cfg.lr) == (own["batch_size"], own["lr"])
    cfg, _ = run.configure("autoregressive", [{"batch_size": 64}], ["lr=1e-4"], str(tmp_path / "b"), False)
    assert (cfg.batch_size, cfg.lr) == (64, 1e-4)
    cfg, _ = run.configure("vae", [], [], str(tmp_path / "c"), False)  # a family without its own
    assert (cfg.batch_size, cfg.lr) == (TrainConfig().batch_size, TrainConfig().lr)


@pytest.mark.parametrize("family", ["vdm", "diffusion"])
def test_diffusion_families_train_at_precision_auto_unless_told(tmp_path, family):
    cfg, _ = run.configure(family, [], [], str(tmp_path / "a"), False)
    assert cfg.precision == "auto"
    cfg, _ = run.configure(family, [{"precision": "fp32"}], [], str(tmp_path / "b"), False)
    assert cfg.precision == "fp32"
