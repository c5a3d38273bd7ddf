"""Fault injection (issue 14): every fault ends in one sentence and exit status 2, and nothing a run
had already written is lost.  A small VAE run is trained once per session and copied per test."""

import os
import shutil
import sys

import pytest
import torch

from lowerbound.cli import main
from lowerbound.io import checkpoint
from lowerbound.io import metrics as metrics_io

from ..train.conftest import subprocess_env

LOG_EVERY = 10
TRAIN = ["train", "vae", "--data", "digits", "--batch-size", "32", "--eval-every", "10", "--checkpoint-every",
         "10", "--keep", "3", "--set", "num_samples=0", "--set", "model.hidden=[32]",
         "--set", "model.latent_dim=4"]


@pytest.fixture(autouse=True)
def restore_denormals():
    """Training in-process flushes denormal floats to zero (a process-wide CPU flag); later test
    modules (hypothesis' float strategies) need IEEE subnormals back."""
    yield
    torch.set_flush_denormal(False)


def one_sentence(err: str) -> str:
    """The error line of a refused command: the last line of stderr, one sentence, no traceback."""
    assert "Traceback" not in err, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("lowerbound: error: ") and line.endswith("."), line
    assert line.count(". ") <= 1, f"more than one sentence: {line}"
    return line


def refused(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return one_sentence(capsys.readouterr().err)


def assert_intact(run, *, skip=()) -> list[int]:
    """Nothing already written is lost: every step checkpoint (but the ones in `skip`) loads and holds
    its step, and metrics.csv has one row per logged step, contiguous from the first; returns the steps."""
    for path in sorted((run / "checkpoints").glob("step-*.pt")):
        if path.name not in skip:
            assert checkpoint.load(path)["step"] == int(path.stem.split("-")[1])
    steps = [int(r["step"]) for r in metrics_io.read(run / "metrics.csv")]
    gaps = [b - a for a, b in zip([0, *steps], steps)]
    # every LOG_EVERY steps; a run stopped by a signal logs its last step too
    assert gaps[:-1] == [LOG_EVERY] * (len(steps) - 1) and 0 < gaps[-1] <= LOG_EVERY, steps
    return steps


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A finished 20-step VAE run (checkpoints at 10 and 20), written under umask 022, and its result."""
    import json

    run = tmp_path_factory.mktemp("faults") / "run"
    old = os.umask(0o022)
    try:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*TRAIN, "--steps", "20", "--run-dir", str(run), "--json"]) == 0
    finally:
        os.umask(old)
    return run, json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run."""
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    return copy


def launch(argv, **kw):
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "lowerbound", *argv], env=subprocess_env(TQDM_DISABLE="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
