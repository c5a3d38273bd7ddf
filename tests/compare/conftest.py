"""A tiny comparison shared by the compare tests: three cheap families on digits, a few seconds each.

The budget is steps, not minutes (a fixed amount of work on a loaded machine); the VAE is small and
its tighter bound is IWAE-100."""

import pytest
import torch

from lowerbound.compare import CompareConfig, Entry, compare

ENTRIES = [
    Entry("independent", "independent", {"steps": 40, "eval_every": 20, "lr": 0.05}),
    Entry("categorical-mixture", "categorical-mixture",
          {"model": {"components": 3, "restarts": 1, "strengths": [16.0], "iterations": 30}}),
    Entry("vae", "vae", {"steps": 30, "eval_every": 10, "num_samples": 16,
                         "model": {"hidden": [32], "latent_dim": 4}}),
]


def tiny_config(out, **kw) -> CompareConfig:
    return CompareConfig(out=str(out), data="digits", entries=list(ENTRIES), minutes=1.0, progress=False,
                         tight_samples=100, sample_n=64, **kw)


@pytest.fixture(scope="session")
def tiny_comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "digits"
    result = compare(tiny_config(out))
    return out, result


@pytest.fixture(autouse=True)
def denormals_restored():
    """Training flushes denormal floats to zero process-wide (train.runtime); later tests (hypothesis'
    float strategies) need IEEE subnormals back."""
    yield
    torch.set_flush_denormal(False)
