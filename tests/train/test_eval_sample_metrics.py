"""`lowerbound eval RUN --samples-for-metrics N`: every family's eval adds the same sample metrics,
with the feature net named; the numbers are those of eval.sample_quality on the run's samples."""

import json

import pytest

import lowerbound
from lowerbound.cli import main
from lowerbound.data import load
from lowerbound.eval import sample_quality
from lowerbound.train.inspect import sample_metrics

FAST = ["--data", "digits", "--steps", "20", "--lr", "0.1", "--eval-every", "10", "--set", "num_samples=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "ind"
    assert main(["train", "independent", *FAST, "--run-dir", str(d), "--json"]) == 0
    return d


@pytest.fixture(autouse=True)
def feature_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOWERBOUND_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))


def test_eval_adds_sample_metrics(run_dir, capsys):
    assert main(["eval", str(run_dir), "--samples-for-metrics", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = out["sample_metrics"]
    assert "bits_per_dim" in out and m["n_samples"] == 200 and m["split"] == "test"
    for key in ("frechet_distance", "kid", "precision", "recall", "density", "coverage", "memorization"):
        assert key in m
    assert m["feature_net"]["name"].startswith("digits classifier") and m["feature_net"]["hash"]
    # the same samples scored directly give the same numbers
    model = lowerbound.load(run_dir)
    again = sample_metrics(model, load("digits"), "test", None, 200, seed=0)
    assert again["frechet_distance"] == pytest.approx(m["frechet_distance"], rel=1e-9)
    assert main(["eval", str(run_dir), "--samples-for-metrics", "200"]) == 0
    text = capsys.readouterr().out
    assert "frechet_distance" in text and "feature net: digits classifier" in text


def test_independent_pixels_are_worse_than_data(run_dir):
    """An independent-pixel model's samples are blurry noise next to real digits: its FD is far above
    that of held-out real images (train examples) against the same test split."""
    model = lowerbound.load(run_dir)
    data = load("digits")
    model_fd = sample_metrics(model, data, "test", None, 300)["frechet_distance"]
    assert model_fd > 5 * sample_quality(data.train[:300], data)["frechet_distance"]


def test_too_few_samples_is_a_user_error(run_dir, capsys):
    assert main(["eval", str(run_dir), "--samples-for-metrics", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
