"""Checkpoints: atomic writes (a crash mid-save never breaks `latest`), safe loading, pruning."""

import os
import pickle

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.io import checkpoint


def _state(step):
    return {"step": step, "w": torch.full((3,), float(step)), "nested": {"lr": 0.1, "xs": [1, 2]}}


def test_round_trip_and_latest_pointer(tmp_path):
    checkpoint.save(tmp_path, _state(5))
    checkpoint.save(tmp_path, _state(10))
    state = checkpoint.load_latest(tmp_path)
    assert state["step"] == 10 and torch.equal(state["w"], torch.full((3,), 10.0))
    assert state["nested"] == {"lr": 0.1, "xs": [1, 2]}
    assert checkpoint.latest_path(tmp_path).name == "step-00000010.pt"


def test_keeps_only_the_last_k(tmp_path):
    for step in range(1, 6):
        checkpoint.save(tmp_path, _state(step), keep=2)
    checkpoint.save(tmp_path, _state(99), name="best.pt", move_latest=False)
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["best.pt", "step-00000004.pt", "step-00000005.pt"]
    assert checkpoint.load_latest(tmp_path)["step"] == 5


def test_crash_while_writing_leaves_latest_loadable(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, _state(1))
    real_save = torch.save

    def dies_halfway(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(20)  # a partial file on disk, then the process "dies"
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, _state(2))
    monkeypatch.undo()
    assert checkpoint.load_latest(tmp_path)["step"] == 1
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file is cleaned up"
    assert not (tmp_path / "step-00000002.pt").exists()


def test_crash_before_the_pointer_moves_keeps_the_old_pointer(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, _state(1))
    real_replace = os.replace

    def fail_on_pointer(src, dst):
        if str(dst).endswith(checkpoint.POINTER):
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_pointer)
    with pytest.raises(UserError, match="Could not write .*latest: power cut"):
        checkpoint.save(tmp_path, _state(2))
    monkeypatch.undo()
    assert checkpoint.load_latest(tmp_path)["step"] == 1


def test_truncated_checkpoint_is_one_sentence(tmp_path):
    path = checkpoint.save(tmp_path, _state(3))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cannot be loaded: it is truncated or corrupt\.$"):
        checkpoint.load(path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "step-00000001.pt"
    torch.save({"step": 1, "evil": payload}, path)  # a zip whose data.pkl calls os.system
    with pytest.raises(UserError, match="would run code"):
        checkpoint.load(path)
    assert not marker.exists()
    # the same payload as a plain pickle file is refused too
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"step": 1, "evil": payload}))
    with pytest.raises(UserError):
        checkpoint.load(plain)
    assert not marker.exists()


def test_missing_pointer_and_bad_pointer(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        checkpoint.load_latest(tmp_path)
    (tmp_path / checkpoint.POINTER).write_text("../../etc/passwd\n")
    with pytest.raises(UserError):
        checkpoint.load_latest(tmp_path)
