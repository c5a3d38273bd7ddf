"""Faults found when a run is reopened: changed options, a broken `latest` pointer, a broken newest
checkpoint, a metrics log that is not text.  Each is one sentence (or a warning naming both files
and a resume from the newest intact checkpoint), and nothing already written is lost."""

import pytest

from lowerbound.cli import main
from lowerbound.io import checkpoint

from .conftest import assert_intact, refused


def _snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.mark.parametrize("change, named", [
    (["--set", "model.latent_dim=64"], "model.latent_dim=4, so --resume cannot change it to 64"),
    (["--data", "toy2d:moons"], "data='digits', so --resume cannot change it to 'toy2d:moons'"),
    (["--seed", "3"], "seed=0, so --resume cannot change it to 3"),
])
def test_resume_with_a_changed_model_or_data_option_names_it(run, capsys, change, named):
    before = _snapshot(run)
    line = refused(capsys, ["train", "--resume", "--run-dir", str(run), "--steps", "30", *change])
    assert named in line, line
    assert _snapshot(run) == before, "nothing is written or lost"


def test_binary_latest_pointer_falls_back_to_the_newest_checkpoint(run, capsys):
    (run / "checkpoints" / "latest").write_bytes(b"\xff\xfe\x00\x81garbage")
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", "30"]) == 0
    err = capsys.readouterr().err
    assert "latest holds binary bytes, not a checkpoint name; using step-00000020.pt (step 20)" in err
    assert assert_intact(run)[-1] == 30


def test_corrupt_newest_checkpoint_falls_back_to_the_newest_intact_one(run, capsys):
    newest = run / "checkpoints" / "step-00000020.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", "30"]) == 0
    err = capsys.readouterr().err
    assert (f"The checkpoint {newest} cannot be loaded: it is truncated or corrupt; using step-00000010.pt "
            "(step 10), the newest checkpoint that loads, instead." in err), err[-1500:]
    assert "resuming at step 10 of 30" in err
    assert assert_intact(run)[-1] == 30  # rows after step 10 were dropped and written again


def test_no_intact_checkpoint_is_one_sentence(run, capsys):
    for path in (run / "checkpoints").glob("step-*.pt"):
        path.write_bytes(b"PK\x03\x04 not really a zip")
    before = _snapshot(run)
    line = refused(capsys, ["train", "--resume", "--run-dir", str(run), "--steps", "30"])
    assert "cannot be loaded: it is truncated or corrupt, and no other checkpoint in" in line
    assert _snapshot(run) == before


def test_metrics_log_that_is_not_text_is_one_sentence(run, capsys):
    metrics = run / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes() + b"\xff\xfe\xfa\n")
    before = _snapshot(run)
    line = refused(capsys, ["train", "--resume", "--run-dir", str(run), "--steps", "30"])
    assert f"The metrics log {metrics} is not text: byte" in line and "is not UTF-8" in line
    assert _snapshot(run) == before
    for path in (run / "checkpoints").glob("*.pt"):
        checkpoint.load(path)
