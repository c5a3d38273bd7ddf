"""train / eval / sample / lowerbound.load through the command line, in process; bad input exits 2."""

import json

import pytest
import torch

import lowerbound
from lowerbound.cli import main
from lowerbound.io import export
from lowerbound.io import metrics as metrics_io

FAST = ["--data", "digits", "--steps", "30", "--lr", "0.1", "--eval-every", "10", "--checkpoint-every", "10",
        "--set", "num_samples=16"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "ind"
    assert main(["train", "independent", *FAST, "--run-dir", str(d), "--json"]) == 0
    return d


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_run_directory_layout(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["schema"] == 1 and cfg["family"] == "independent" and cfg["steps"] == 30
    assert cfg["layout"] == {"levels": 17, "shape": [1, 8, 8]} and cfg["model"] == {"init_scale": 0.0}
    rows = metrics_io.read(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    assert {"time", "examples_per_s", "loss_bpd", "nll_bpd", "grad_norm", "lr", "valid_bpd"} <= set(rows[0])
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-00000030.pt" and (ckpts / "best.pt").is_file()
    assert len(list(ckpts.glob("step-*.pt"))) == 3
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "report.md").is_file()
    report = (run_dir / "report.md").read_text()
    assert "| test |" in report and "| valid |" in report and "| train |" in report


def test_train_json_eval_and_load_agree(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json"]) == 0
    ev = _json_out(capsys)
    for key in ("bits_per_dim", "terms", "estimator", "exact", "stderr", "interval"):
        assert key in ev
    # the loaded model's exact bound on the test set is the number eval printed
    model = lowerbound.load(run_dir)
    test = lowerbound.data.load("digits").test
    with torch.no_grad():
        direct = float(model.bound(test).bits_per_dim().double().mean())
    assert ev["bits_per_dim"] == pytest.approx(direct, rel=1e-6)
    assert ev["exact"] and ev["estimator"] == "exact"
    lo, hi = ev["interval"]
    assert lo < ev["bits_per_dim"] < hi
    # the export alone gives the same model; 'last' is the latest state's EMA weights
    same = lowerbound.load(run_dir / "model.safetensors")
    assert torch.equal(same.logits, model.logits)
    assert main(["eval", str(run_dir), "--checkpoint", "last", "--split", "valid", "--json"]) == 0
    assert _json_out(capsys)["split"] == "valid"


def test_sample_writes_a_picture(run_dir, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "-n", "8", "--seed", "1", "-o", str(out)]) == 0
    written = capsys.readouterr().out.strip()
    assert written.endswith((".png", ".pt")) and (tmp_path / written.split("/")[-1]).is_file()


def _refused(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lowerbound: error:") and match in err and err.count("\n") == 0, err


def test_bad_input_is_one_sentence_and_exit_2(run_dir, tmp_path, capsys):
    _refused(capsys, ["train", "no-such-family", "--run-dir", str(tmp_path / "a")], "Unknown model family")
    _refused(capsys, ["train", "independent", "--data", "nope", "--run-dir", str(tmp_path / "b")],
             "Unknown data set")
    _refused(capsys, ["train", "independent", "--set", "lr=fast", "--run-dir", str(tmp_path / "c")],
             "config.lr must be a number")
    _refused(capsys, ["eval", str(tmp_path)], "not a lowerbound run directory")
    _refused(capsys, ["train", "independent", "--precision", "fp16", "--device", "cpu", "--run-dir",
                      str(tmp_path / "d")], "fp16 needs a GPU")
    assert not (tmp_path / "d").exists(), "a refused run writes nothing"
    _refused(capsys, ["train", "--resume", "--run-dir", str(tmp_path / "none")], "does not exist")
    # a new run into a non-empty directory is refused and nothing is touched
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    _refused(capsys, ["train", "independent", *FAST, "--run-dir", str(run_dir)], "pass --resume")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_corrupt_checkpoint_and_foreign_export_are_refused(run_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for step in (broken / "checkpoints").glob("step-*.pt"):  # no intact one to fall back on
        step.write_bytes(step.read_bytes()[:100])
    _refused(capsys, ["eval", str(broken), "--checkpoint", "last"], "cannot be loaded: it is truncated")
    # an export of another model (other shape) in place of this run's
    weights, info = export.load(run_dir / "model.safetensors")
    export.save(broken / "model.safetensors", {"logits": torch.zeros(16, 17)}, {**info, "shape": [1, 8, 8]})
    _refused(capsys, ["eval", str(broken)], "come from another model")
    with pytest.raises(lowerbound.UserError, match="come from another model"):
        lowerbound.load(broken / "model.safetensors")


def test_fit_mode_family_is_exported_and_reported(tmp_path, capsys):
    d = tmp_path / "uni"
    assert main(["train", "uniform", "--data", "digits", "--run-dir", str(d), "--json"]) == 0
    out = _json_out(capsys)
    assert out["bits_per_dim"] == pytest.approx(4.087, abs=1e-3)  # log2(17): the closed form
    assert (d / "model.safetensors").is_file() and "| test |" in (d / "report.md").read_text()


def test_vae_iwae_eval_shows_the_elbo_and_gap_extras(tmp_path, capsys):
    d = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--steps", "2", "--eval-every", "1", "--set",
                 "num_samples=0", "--set", "model.hidden=[8]", "--set", "model.latent_dim=2",
                 "--run-dir", str(d), "--json"]) == 0
    capsys.readouterr()
    assert main(["eval", str(d), "--estimator", "iwae", "--samples", "20", "--json"]) == 0
    ev = _json_out(capsys)
    elbo, gap = ev["extras"]["elbo"], ev["extras"]["gap"]
    # gap = ELBO - IWAE per example, so its mean is the difference of the means; IWAE is the tighter
    assert gap["value"] == pytest.approx(elbo["value"] - ev["bits_per_dim"], abs=1e-9)
    assert gap["value"] > 0 and 0 < gap["stderr"] < gap["value"]
    assert main(["eval", str(d), "--estimator", "iwae", "--samples", "20"]) == 0
    table = capsys.readouterr().out
    assert "| elbo | gap |" in table and f"{gap['value']:.4f} ± {gap['stderr']:.4f}" in table


def test_diffusion_run_validates_by_mc_and_samples_only_at_the_end(tmp_path, capsys):
    """An iterative sampler draws no grid inside the loop unless asked; validation uses the model's
    cheap estimator, while the final table uses the default (the full sum over T steps)."""
    d = tmp_path / "diff"
    args = ["train", "diffusion", "--data", "digits", "--steps", "4", "--eval-every", "2",
            "--set", "model.timesteps=20", "--set", "model.mlp.width=32", "--set", "num_samples=4",
            "--run-dir", str(d), "--json"]
    assert main(args) == 0
    out = _json_out(capsys)
    assert out["estimator"] == "vlb-T=20" and set(out["terms"]) == {"prior", "diffusion", "reconstruction"}
    assert sorted(p.name for p in (d / "samples").glob("*.png")) == ["final.png"]
    assert [int(r["step"]) for r in metrics_io.read(d / "metrics.csv") if r["valid_bpd"]] == [2, 4]
    d2 = tmp_path / "diff2"
    assert main(args[:-3] + ["--set", "sample_every=2", "--run-dir", str(d2), "--json"]) == 0
    capsys.readouterr()
    assert len(list((d2 / "samples").glob("*.png"))) == 3
