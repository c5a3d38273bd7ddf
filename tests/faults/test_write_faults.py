"""Faults while writing: a full disk (a file-size limit) during a checkpoint, no permission, an
output that is a folder.  One sentence each, the partial file removed, nothing already written lost;
files are readable by others under umask 022; temporaries of a killed write are cleared on resume."""

import errno
import os
import resource
import stat

import pytest

from lowerbound.cli import main
from lowerbound.io import checkpoint

from .conftest import TRAIN, assert_intact, launch, one_sentence, refused

LIMIT = 64 * 1024  # bytes: above metrics.csv and config.json, below one checkpoint of the test VAE


def _file_size_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_full_disk_during_a_checkpoint_names_the_intact_one(run):
    assert checkpoint.load_latest(run / "checkpoints")["step"] == 20
    sizes = [(run / "checkpoints" / "step-00000020.pt").stat().st_size, (run / "metrics.csv").stat().st_size]
    assert sizes[0] > LIMIT > sizes[1]
    proc = launch(["train", "--resume", "--run-dir", str(run), "--steps", "40"], preexec_fn=_file_size_limit)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    line = one_sentence(err)
    assert "Could not write" in line and "file-size limit, at step 30" in line, line
    assert f"the last complete checkpoint {run / 'checkpoints' / 'step-00000020.pt'} is intact" in line, line
    assert f"lowerbound train --resume --run-dir {run} continues from it" in line
    assert not list(run.rglob("*.tmp")), "the partial file is removed"
    assert checkpoint.load_latest(run / "checkpoints")["step"] == 20
    assert_intact(run)
    # with room again, the run continues where the named checkpoint left it
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", "40"]) == 0
    assert assert_intact(run)[-1] == 40


def _deny_writes_under(folder, monkeypatch):
    """No write permission in folder: a real read-only mode, or (root ignores modes) os.mkdir and
    os.open refusing every path under it, as the kernel would."""
    if os.geteuid() != 0:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return

    def denied(real):
        def call(path, *a, **k):
            if str(path).startswith(str(folder)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *a, **k)
        return call

    monkeypatch.setattr(os, "mkdir", denied(os.mkdir))
    monkeypatch.setattr(os, "open", denied(os.open))


def test_no_permission_to_create_the_run_directory(tmp_path, capsys, monkeypatch):
    parent = tmp_path / "readonly"
    parent.mkdir()
    _deny_writes_under(parent, monkeypatch)
    try:
        line = refused(capsys, [*TRAIN, "--steps", "5", "--run-dir", str(parent / "run")])
    finally:
        parent.chmod(0o755)
    assert line.endswith(f"Could not create the run directory {parent / 'run'}: permission is denied.")
    assert list(parent.iterdir()) == []


def test_no_permission_to_write_in_the_run_directory(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    _deny_writes_under(run, monkeypatch)
    try:
        line = refused(capsys, [*TRAIN, "--steps", "5", "--run-dir", str(run)])
    finally:
        run.chmod(0o755)
    assert f"Could not lock the run directory {run / '.lowerbound.lock'}: permission is denied." in line
    assert list(run.iterdir()) == []


def test_sample_into_an_existing_folder_is_one_sentence(run, tmp_path, capsys):
    out = tmp_path / "pictures"
    out.mkdir()
    line = refused(capsys, ["sample", str(run), "-n", "4", "-o", str(out)])
    assert f"The output {out} is a folder" in line
    assert list(out.iterdir()) == []


def test_files_are_readable_by_others_under_umask_022(trained):
    run = trained[0]
    for path in [run / "config.json", run / "metrics.csv", run / "model.safetensors", run / "report.md",
                 *(run / "checkpoints").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_resume_clears_temporaries_of_a_killed_write(run, capsys):
    stale = [run / "checkpoints" / ".step-00000030.pt.4242.0123456789ab.tmp", run / ".config.json.abc123.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 100_000)
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", "30"]) == 0
    assert "removed 2 temporary file(s) left by an interrupted write" in capsys.readouterr().err
    assert not any(p.exists() for p in stale)
    assert assert_intact(run)[-1] == 30


@pytest.mark.parametrize("option", ["--batch-size", "--samples"])
def test_eval_refuses_a_zero_batch_size_or_sample_count(run, capsys, option):
    line = refused(capsys, ["eval", str(run), option, "0"])
    assert "must be at least 1, got 0" in line
