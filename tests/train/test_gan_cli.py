"""A GAN through the common runtime and the CLI: validation by a sample metric, report and eval say
"no likelihood", a bound estimator is refused (exit 2), and resuming replays the run bitwise."""

import json

import pytest
import torch

from lowerbound.cli import main
from lowerbound.io import checkpoint
from lowerbound.io import metrics as metrics_io

TINY = ["--set", "model.architecture=mlp", "--set", "model.hidden=[16]", "--set", "model.latent_dim=4",
        "--set", "model.validation_samples=40", "--set", "num_samples=16"]
FAST = ["--data", "digits", "--eval-every", "10", "--checkpoint-every", "10", "--batch-size", "32", *TINY]


@pytest.fixture(autouse=True)
def feature_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOWERBOUND_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "gan"
    mp = pytest.MonkeyPatch()
    mp.setenv("LOWERBOUND_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
    try:
        assert main(["train", "gan", *FAST, "--steps", "20", "--run-dir", str(d), "--json"]) == 0
    finally:
        mp.undo()
    return d


def test_gan_run_is_selected_by_a_validation_sample_metric(gan_run):
    rows = metrics_io.read(gan_run / "metrics.csv")
    assert {"real_nats", "fake_nats", "r1_nats", "generator_nats", "valid_fd"} <= set(rows[0])
    fds = [float(r["valid_fd"]) for r in rows if r["valid_fd"] != ""]
    assert len(fds) == 2 and all(v > 0 for v in fds)
    best = checkpoint.load(gan_run / "checkpoints" / "best.pt")
    assert best["best_value"] == pytest.approx(min(fds)) and best["step"] == 10 * (1 + fds.index(min(fds)))
    report = (gan_run / "report.md").read_text()
    assert "No likelihood" in report and "No Parzen-window number" in report
    assert "frechet_distance" in report and "feature net" in report


def test_eval_reports_no_likelihood_and_sample_metrics(gan_run, capsys):
    assert main(["eval", str(gan_run), "--samples-for-metrics", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["likelihood"] == "no likelihood" and "bits_per_dim" not in out
    assert out["sample_metrics"]["n_samples"] == 100 and out["sample_metrics"]["feature_net"]["hash"]
    assert main(["eval", str(gan_run)]) == 0
    text = capsys.readouterr().out
    assert "no likelihood" in text and "precision" in text
    assert main(["eval", str(gan_run), "--estimator", "elbo"]) == 2
    assert "no likelihood" in capsys.readouterr().err


def test_resumed_gan_replays_both_players_bitwise(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "gan", *FAST, "--steps", "20", "--run-dir", str(straight), "--json"]) == 0
    assert main(["train", "gan", *FAST, "--steps", "10", "--run-dir", str(resumed), "--json"]) == 0
    assert main(["train", "--resume", "--run-dir", str(resumed), "--steps", "20", "--json"]) == 0
    a = checkpoint.load(straight / "checkpoints" / "step-00000020.pt")
    b = checkpoint.load(resumed / "checkpoints" / "step-00000020.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [g["phase"] for g in a["optimizer"]["param_groups"]] == ["discriminator", "generator"]
