"""model.safetensors exports: round trip with metadata; foreign or broken files are one sentence."""

import pytest
import torch

from lowerbound.errors import UserError
from lowerbound.io import export


def test_round_trip_with_metadata(tmp_path):
    w = torch.randn(4, 3)
    tensors = {"a": w, "b": w.t(), "c": torch.arange(5)}  # shared storage and non-contiguous
    export.save(tmp_path / "m.safetensors", tensors, {"family": "x", "shape": [1, 2]})
    back, info = export.load(tmp_path / "m.safetensors")
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert info == {"schema": export.SCHEMA, "family": "x", "shape": [1, 2]}


def test_foreign_and_broken_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="not a lowerbound export"):
        export.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(UserError, match="not a readable safetensors"):
        export.load(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        export.load(tmp_path / "missing.safetensors")
