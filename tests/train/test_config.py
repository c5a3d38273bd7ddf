"""TrainConfig: layers merge in order, --set values are typed, bad keys and types are refused by name."""

import pytest

from lowerbound.errors import UserError
from lowerbound.train.config import TrainConfig, parse_value, read_yaml, resolve


def test_layers_and_sets(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 3e-4\nbatch_size: 64\nmodel:\n  init_scale: 0.5\n")
    cfg = resolve({"family": "independent"}, read_yaml(yaml_file), {"batch_size": None, "steps": 7},
                  sets=["model.extra=2", "precision=bf16", "minutes=0.5"])
    assert cfg.lr == 3e-4 and cfg.batch_size == 64 and cfg.steps == 7
    assert cfg.model == {"init_scale": 0.5, "extra": 2} and cfg.precision == "bf16" and cfg.minutes == 0.5


def test_parse_value_types_like_yaml():
    assert parse_value("1e-3") == 1e-3 and isinstance(parse_value("128"), int)
    assert parse_value("true") is True and parse_value("cosine") == "cosine"


@pytest.mark.parametrize("sets, match", [
    (["lr_typo=1"], "Unknown option config.lr_typo"),
    (["batch_size=abc"], "config.batch_size must be an integer"),
    (["precision=fp8"], "config.precision must be one of"),
    (["steps=0"], "steps must be at least 1"),
    (["novalue"], "must look like key=value"),
])
def test_bad_options_are_refused_by_name(sets, match):
    with pytest.raises(UserError, match=match):
        resolve({"family": "independent"}, sets=sets)


def test_learning_rate_schedule():
    cfg = TrainConfig(family="x", steps=100, lr=1.0, warmup_steps=10, schedule="cosine")
    assert cfg.lr_at(0) == pytest.approx(0.1 * 1.0)
    assert cfg.lr_at(50) == pytest.approx(0.5)
    assert cfg.lr_at(100) == pytest.approx(0.0, abs=1e-12)
    assert TrainConfig(family="x").lr_at(12345) == 1e-3
