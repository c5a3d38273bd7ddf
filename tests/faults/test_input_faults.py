"""Options that cannot run: absurd levels, a model larger than memory, bf16 on a CPU without bfloat16
instructions (and bf16 working where it has them); and the number eval prints by default is exactly
the one report.md shows."""

import json

import numpy as np
import pytest
import torch

from lowerbound.cli import main
from lowerbound.train import runtime

from .conftest import TRAIN, refused


@pytest.fixture
def ints(tmp_path):
    path = tmp_path / "ints.npy"
    np.save(path, np.random.default_rng(0).integers(0, 17, (60, 1, 4, 4)))
    return path


def test_absurd_levels_are_refused_before_anything_is_allocated(ints, tmp_path, capsys):
    run = tmp_path / "r"
    line = refused(capsys, ["train", "vae", "--data", f"npy:{ints}", "--set",
                            "data_options.levels=1000000000", "--run-dir", str(run)])
    assert "levels must be between 2 and 65536, got 1000000000" in line
    assert not run.exists()


def test_a_model_larger_than_memory_is_refused_before_it_is_built(ints, tmp_path, capsys):
    run = tmp_path / "r"
    line = refused(capsys, ["train", "vae", "--data", f"npy:{ints}", "--set", "data_options.levels=65536",
                            "--set", "model.hidden=[65536]", "--run-dir", str(run)])
    assert "The vae model for this data (65536 levels, shape (1, 4, 4)) would have" in line
    assert "more than this machine's" in line and not run.exists()


def test_bf16_on_a_cpu_without_bfloat16_instructions_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: None)
    run = tmp_path / "r"
    line = refused(capsys, [*TRAIN, "--steps", "5", "--device", "cpu", "--precision", "bf16",
                            "--run-dir", str(run)])
    assert "The precision bf16 on the CPU needs bfloat16 instructions" in line and not run.exists()


@pytest.mark.skipif(runtime.cpu_bf16() is None, reason="this CPU has no bfloat16 instructions")
def test_bf16_trains_under_cpu_autocast_where_the_cpu_has_it(tmp_path, capsys, monkeypatch):
    seen = []
    real = torch.autocast

    def spy(device_type, *a, **k):
        seen.append((device_type, k.get("dtype")))
        return real(device_type, *a, **k)

    monkeypatch.setattr(torch, "autocast", spy)
    run = tmp_path / "r"
    capsys.readouterr()
    assert main([*TRAIN, "--steps", "10", "--device", "cpu", "--precision", "bf16", "--run-dir", str(run),
                 "--json"]) == 0
    out = capsys.readouterr()
    assert f"bf16 autocast on the CPU ({runtime.cpu_bf16()} instructions)" in out.err
    assert seen and set(seen) == {("cpu", torch.bfloat16)}, "every training step ran under bf16 autocast"
    assert np.isfinite(json.loads(out.out)["bits_per_dim"])


def test_eval_by_default_prints_exactly_the_number_of_report_md(trained, capsys):
    run, result = trained
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["bits_per_dim"] == result["bits_per_dim"] and default["stderr"] == result["stderr"]
    assert f"| test | {result['bits_per_dim']:.4f} |" in (run / "report.md").read_text()
    assert main(["eval", str(run), "--json", "--seed", "5"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["bits_per_dim"] != result["bits_per_dim"], "another seed draws other Monte Carlo noise"
