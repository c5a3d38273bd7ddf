"""`lowerbound eval --diffusers DIR` on folders written by save_pretrained: the number the command
prints is the Python path's (load_diffusers + eval.likelihood with the same seed), with its terms and
stderr; a missing optional package is one sentence naming the extra, from Python and from the CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from lowerbound import cli
from lowerbound.adapters import from_diffusers, load_diffusers
from lowerbound.adapters._optional import EXTRA
from lowerbound.data import load
from lowerbound.errors import UserError
from lowerbound.eval.likelihood import likelihood
from lowerbound.train import runtime

from .test_diffusers import tiny_unet

diffusers = pytest.importorskip("diffusers")
T = 10


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DDPMPipeline folder (unet/, scheduler/) and a flat folder (config.json beside
    scheduler_config.json), both of the same tiny digits model."""
    unet = tiny_unet()
    sched = diffusers.DDPMScheduler(num_train_timesteps=T, beta_start=1e-3, beta_end=0.2)
    pipeline = tmp_path_factory.mktemp("pipeline")
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(pipeline)
    flat = tmp_path_factory.mktemp("flat")
    unet.save_pretrained(flat)
    sched.save_pretrained(flat)
    return pipeline, flat, unet, sched


def test_cli_prints_the_python_paths_bound_with_terms(saved, capsys):
    pipeline, _, unet, sched = saved
    argv = ["eval", "--diffusers", str(pipeline), "--data", "digits", "--device", "cpu", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == f"vlb-T={T}" and out["n"] == 360 and out["split"] == "test"
    assert set(out["terms"]) == {"prior", "diffusion", "reconstruction"} and out["stderr"] > 0
    assert str(pipeline) in out["weights"]
    reference = likelihood(from_diffusers(unet, sched, levels=17), load("digits"), "test",
                           seed=runtime.derive_seed(0, "eval"), progress=False)
    assert out["bits_per_dim"] == pytest.approx(reference.value, rel=1e-9)
    assert out["stderr"] == pytest.approx(reference.stderr, rel=1e-9)
    assert cli.main(["eval", "--diffusers", str(pipeline), "--estimator", "mc", "--samples", "2",
                     "--split", "train", "--batch-size", "512"]) == 0
    table = capsys.readouterr().out
    assert "vlb-mc-k=2" in table and "reconstruction" in table and "diffusers:" in table


def test_flat_folder_loads_the_same_model(saved):
    pipeline, flat, unet, sched = saved
    x = load("digits").test[:4]
    scores = [m.bound(x, generator=torch.Generator().manual_seed(0)).nats
              for m in (load_diffusers(pipeline, levels=17), load_diffusers(flat, levels=17),
                        from_diffusers(unet, sched, levels=17))]
    torch.testing.assert_close(scores[0], scores[2], rtol=1e-6, atol=0)
    torch.testing.assert_close(scores[1], scores[2], rtol=1e-6, atol=0)


def test_missing_diffusers_names_the_extra(saved, monkeypatch, capsys):
    pipeline = saved[0]
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(UserError, match="lowerbound\\[adapters\\]") as e:
        load_diffusers(pipeline, levels=17)
    assert str(e.value).count(".") <= 2 and EXTRA in str(e.value)
    assert cli.main(["eval", "--diffusers", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert EXTRA in err and len(err.strip().splitlines()) == 1


def test_bad_folders_and_arguments_are_one_sentence(tmp_path, capsys):
    assert cli.main(["eval", "--diffusers", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["eval", "--diffusers", str(tmp_path)]) == 2
    assert "holds no diffusers model" in capsys.readouterr().err
    assert cli.main(["eval"]) == 2
    assert "run directory" in capsys.readouterr().err
    assert cli.main(["eval", "--diffusers", str(tmp_path), "--split", "valid"]) == 2


def test_sample_metrics_of_a_diffusers_model(saved, capsys, tmp_path_factory, monkeypatch):
    """--samples-for-metrics: the adapted model samples (ancestral, T steps), and the metrics are
    those of eval.sample_quality on the same draws."""
    from lowerbound.train.inspect import sample_metrics

    monkeypatch.setenv("LOWERBOUND_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
    pipeline, _, unet, sched = saved
    argv = ["eval", "--diffusers", str(pipeline), "--estimator", "mc", "--samples", "1",
            "--samples-for-metrics", "40", "--json"]
    assert cli.main(argv) == 0
    m = json.loads(capsys.readouterr().out)["sample_metrics"]
    assert m["n_samples"] == 40 and m["split"] == "test"
    again = sample_metrics(from_diffusers(unet, sched, levels=17), load("digits"), "test", None, 40, seed=0)
    assert again["frechet_distance"] == pytest.approx(m["frechet_distance"], rel=1e-9)
