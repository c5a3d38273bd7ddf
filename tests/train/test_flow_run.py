"""`lowerbound train flow` end to end through the CLI: exact on continuous data (with the KL to the
known truth), a bound with its dequantization term on discrete data, and the iw estimator at eval."""

import json

import pytest
import torch

from lowerbound.cli import main

SMALL = ["--eval-every", "2", "--set", "num_samples=4", "--json"]


@pytest.fixture(autouse=True)
def restore_denormals():
    """A run flushes denormals process-wide (train.runtime); later tests in this process need them."""
    yield
    torch.set_flush_denormal(False)


def test_flow_on_toy2d_is_exact_and_reports_the_kl_to_the_truth(tmp_path, capsys):
    assert main(["train", "flow", "--data", "toy2d:rings", "--steps", "4",
                 "--set", "data_options.n_train=500", "--set", "data_options.n_test=200",
                 "--set", "model.transforms=2", "--set", "model.hidden=[16]",
                 "--run-dir", str(tmp_path / "t"), *SMALL]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "exact" and out["exact"] is True and out["unit"] == "nats"
    assert out["kl_to_truth"]["value"] > 0 and set(out["terms"]) == {"nll"}


def test_glow_with_variational_dequantization_on_digits(tmp_path, capsys):
    d = tmp_path / "g"
    assert main(["train", "flow", "--data", "digits", "--steps", "4", "--set", "model.arch=glow",
                 "--set", "model.dequantization=variational", "--set", "model.steps=1",
                 "--set", "model.width=8", "--set", "model.dequant_hidden=[8]",
                 "--set", "model.eval_samples=2", "--run-dir", str(d), *SMALL]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "dequantization-s=2" and out["exact"] is False
    assert set(out["terms"]) == {"nll", "dequantization"} and out["terms"]["dequantization"]["value"] > 0
    assert main(["eval", str(d), "--estimator", "iw", "--samples", "16", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["estimator"] == "iw-k=16" and ev["extras"]["gap"]["value"] > 0
    assert ev["bits_per_dim"] < ev["extras"]["bound"]["value"]
