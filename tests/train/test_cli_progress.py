"""The eval and sample commands' progress bars and precision, in process, on a tiny diffusion run: eval
shows its bar on stderr unless --no-progress; sample --precision bf16 runs where the CPU has bfloat16
instructions, and fp16 on a CPU is one sentence with exit status 2, nothing written."""

import json

import pytest

from lowerbound.cli import main
from lowerbound.train import runtime


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "diff"
    assert main(["train", "diffusion", "--data", "digits", "--steps", "2", "--eval-every", "2",
                 "--set", "model.timesteps=10", "--set", "model.mlp.width=16", "--set", "num_samples=0",
                 "--run-dir", str(d), "--json"]) == 0
    return d


def test_eval_bar_on_stderr_only_with_progress(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert main(["eval", str(run_dir), "--json"]) == 0
    shown = capsys.readouterr()
    assert "bound on digits test" in shown.err
    assert json.loads(shown.out)["bits_per_dim"] == json.loads(quiet.out)["bits_per_dim"]


def test_sample_precision(run_dir, tmp_path, capsys):
    out = tmp_path / "fp16.png"
    argv = ["sample", str(run_dir), "-n", "4", "-o", str(out), "--device", "cpu"]
    assert main([*argv, "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fp16 needs a CUDA device" in err and err.count("\n") == 0 and not out.exists()
    if runtime.cpu_bf16() is None:
        pytest.skip("this CPU has no bfloat16 instructions")
    out = tmp_path / "bf16.png"
    argv[5] = str(out)
    assert main([*argv, "--precision", "bf16", "--batch-size", "3", "--no-progress"]) == 0
    assert out.is_file() and capsys.readouterr().err == ""
