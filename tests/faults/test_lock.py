"""Two writers never share a run directory: the second is refused naming the holder's pid, and the
lock of a process that died (SIGKILL) is taken over by the next run (io/lock.py)."""

import signal
import time

from lowerbound.cli import main
from lowerbound.io import checkpoint
from lowerbound.io.lock import OWNER, RunLock, read_owner

from .conftest import TRAIN, assert_intact, launch, refused


def _wait_for(proc, path, timeout=120.0):
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() - start < timeout, f"{path} never appeared"
        time.sleep(0.01)


def _hold(run):
    """A training that holds the lock of `run` for long; returns the process once it has a checkpoint."""
    proc = launch([*TRAIN, "--steps", "100000", "--run-dir", str(run)])
    _wait_for(proc, run / "checkpoints" / "latest")
    assert read_owner(run)["pid"] == proc.pid
    return proc


def test_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "shared"
    proc = _hold(run)
    try:
        for argv in ([*TRAIN, "--steps", "30", "--seed", "1", "--run-dir", str(run)],  # a new run
                     ["train", "--resume", "--run-dir", str(run)],
                     ["sample", str(run), "-n", "4", "--checkpoint", "last"]):  # writes into the run
            line = refused(capsys, argv)
            assert f"in use by process {proc.pid}" in line and str(run) in line, line
        assert sorted(p.name for p in (run / "samples").iterdir()) == [], "the refused sample wrote nothing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert (run / "metrics.csv").read_text().count("step,") == 1, "one writer: one header"
    assert read_owner(run)["pid"] == proc.pid, "the dead holder's record is still there"
    assert RunLock(run).busy() is None, "the kernel released the dead process's lock"
    step = checkpoint.load_latest(run / "checkpoints")["step"]
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", str(step + 10)]) == 0
    err = capsys.readouterr().err
    assert f"took over the lock of {run} from process {proc.pid} (train), which is no longer running" in err
    assert assert_intact(run)[-1] == step + 10
    assert not (run / OWNER).exists(), "a clean exit gives the lock back"


def test_new_run_in_a_file_or_under_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = refused(capsys, [*TRAIN, "--steps", "5", "--run-dir", str(afile)])
    assert f"The run directory {afile} is a file, not a folder" in line
    line = refused(capsys, [*TRAIN, "--steps", "5", "--run-dir", str(afile / "sub")])
    assert f"lies under {afile}, which is a file" in line
    line = refused(capsys, ["train", "--resume", "--run-dir", str(afile)])
    assert "is a file, not a run directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and afile.read_text() == "x"
