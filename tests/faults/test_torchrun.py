"""torchrun workers: a SIGTERM tells every rank the path to resume from, and a worker leaves through
runtime.end_worker (os._exit after the exit handlers), since a normal C++ exit with DDP's leaked
gloo threads aborts about 1 exit in 5 (benchmarks/torchrun_exit.py)."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from lowerbound import cli
from lowerbound.train import runtime

from ..train.conftest import subprocess_env


def test_a_torchrun_worker_leaves_through_end_worker(monkeypatch, capsys):
    ended = []
    monkeypatch.setattr(runtime, "end_worker", ended.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "argv", ["lowerbound", "data"])
    assert cli.main() == 0 and ended == [0], "the program's own exit goes through end_worker"
    assert cli.main(["data"]) == 0 and ended == [0], "an in-process call (argv given) never exits"


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_sigterm_under_torchrun_names_the_run_directory_on_every_rank(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "lowerbound", "train", "independent", "--data", "digits", "--steps", "1000000", "--device", "cpu",
           "--checkpoint-every", "20", "--set", "num_samples=0", "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, env=subprocess_env(TQDM_DISABLE="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not (run / "checkpoints" / "latest").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() - start < 180, "no checkpoint was written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    _, err = proc.communicate(timeout=180)
    lines = [line for line in err.splitlines() if "stopped by SIGTERM" in line]
    assert len(lines) == 2, err[-3000:]
    assert all(line.endswith(f"lowerbound train --resume --run-dir {run}") for line in lines), lines
    assert "terminate called" not in err
