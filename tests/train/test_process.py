"""Real processes: SIGKILL then --resume is bitwise exact; SIGTERM saves and says how to resume;
torchrun with 2 CPU processes (gloo) follows the single-process loss curve."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from lowerbound.cli import main
from lowerbound.io import checkpoint
from lowerbound.io import metrics as metrics_io

from .conftest import subprocess_env

ARGS = ["--data", "digits", "--batch-size", "128", "--lr", "0.05", "--eval-every", "100",
        "--checkpoint-every", "50", "--keep", "2", "--set", "num_samples=0", "--set", "model.init_scale=0.1"]
TIMING = {"time", "examples_per_s"}


def _launch(argv):
    return subprocess.Popen([sys.executable, "-m", "lowerbound", *argv], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc, folder, timeout=120.0):
    """Poll until the run has written its first checkpoint (then it is mid-training)."""
    start = time.monotonic()
    while not (folder / "checkpoints" / "latest").exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() - start < timeout, "the run never wrote a checkpoint"
        time.sleep(0.002)


def _final_state(run):
    return checkpoint.load_latest(run / "checkpoints")


def _assert_same_state(a, b):
    assert a["step"] == b["step"]
    for key in ("model",):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert all(torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]) for k in a["ema"]["shadow"])
    assert a["ema"]["num_updates"] == b["ema"]["num_updates"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for key in ("best_step", "best_value", "examples", "evals_since_best"):
        assert a[key] == b[key], key


def _rows(run, drop=TIMING):
    return [{k: v for k, v in r.items() if k not in drop} for r in metrics_io.read(run / "metrics.csv")]


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    steps = ["--steps", "300"]
    assert main(["train", "independent", *ARGS, *steps, "--run-dir", str(straight)]) == 0

    proc = _launch(["train", "independent", *ARGS, *steps, "--run-dir", str(killed)])
    _wait_for_checkpoint(proc, killed)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run must be killed mid-training for this test"
    interrupted_at = _final_state(killed)["step"]
    assert interrupted_at < 300

    assert main(["train", "--resume", "--run-dir", str(killed)]) == 0
    _assert_same_state(_final_state(straight), _final_state(killed))
    _assert_same_state(checkpoint.load(straight / "checkpoints" / "best.pt"),
                       checkpoint.load(killed / "checkpoints" / "best.pt"))
    assert _rows(straight) == _rows(killed)


def test_sigterm_saves_and_says_how_to_resume(tmp_path):
    run = tmp_path / "term"
    proc = _launch(["train", "independent", *ARGS, "--steps", "1000000", "--run-dir", str(run)])
    _wait_for_checkpoint(proc, run)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err and f"--resume --run-dir {run}" in err and "Traceback" not in err
    step = _final_state(run)["step"]
    assert f"at step {step};" in err
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", str(step + 7)]) == 0
    assert _final_state(run)["step"] == step + 7


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_two_cpu_processes_follow_the_single_process_curve(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    argv = ["train", "independent", *ARGS, "--steps", "60", "--eval-every", "20", "--device", "cpu"]
    assert main([*argv, "--run-dir", str(single)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lowerbound", *argv, "--run-dir", str(ddp), "--json"]
    out = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = _rows(single), _rows(ddp)
    assert [r["step"] for r in a] == [r["step"] for r in b], "rank 0 alone writes: one row per step"
    for col in ("loss_bpd", "grad_norm", "valid_bpd"):
        xs = [float(r[col]) for r in a if r[col]]
        ys = [float(r[col]) for r in b if r[col]]
        assert len(xs) == len(ys) > 0
        torch.testing.assert_close(torch.tensor(ys), torch.tensor(xs), rtol=1e-5, atol=1e-6)
    sa, sb = _final_state(single), _final_state(ddp)
    torch.testing.assert_close(sb["model"]["logits"], sa["model"]["logits"], rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
