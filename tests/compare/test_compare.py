"""compare: the table and compare.json hold the run directories' own numbers, and reruns skip,
resume and reuse.  Oracles: the bound recomputed from the exported weights by hand, the eval
command's own path (`evaluate_run`) for the tighter estimator, the runs' metrics.csv, and mean /
std-over-sqrt(S) across seeds."""

import json
import math
import subprocess
import sys

import pytest
import torch

import lowerbound
from lowerbound import data
from lowerbound.compare import CompareConfig, Entry, compare, entries_for
from lowerbound.compare.score import aggregate
from lowerbound.errors import UserError
from lowerbound.io import metrics as metrics_io
from lowerbound.train.inspect import evaluate_run

from ..train.conftest import subprocess_env
from .conftest import tiny_config


def _records(result):
    return {r["name"]: r for r in result["runs"]}


def test_exact_families_match_their_bound_computed_by_hand(tiny_comparison):
    out, result = tiny_comparison
    test = data.load("digits").test
    for name in ("independent", "categorical-mixture"):
        r = _records(result)[name]
        model = lowerbound.load(out / name)
        with torch.no_grad():
            bits = model.bound(test).nats.double() / (test[0].numel() * math.log(2))
        assert r["exact"] and r["metric"] == "bits/dim"
        assert r["value"] == pytest.approx(bits.mean().item(), abs=1e-6)  # float32 sums per batch
        assert r["stderr"] == pytest.approx((bits.std() / math.sqrt(len(bits))).item(), rel=1e-6)
        assert sum(r["terms"].values()) == pytest.approx(r["value"], abs=1e-9)


def test_vae_tighter_estimate_is_the_eval_commands_iwae_and_below_the_elbo(tiny_comparison):
    out, result = tiny_comparison
    r = _records(result)["vae"]
    assert r["estimator"].startswith("elbo") and not r["exact"]
    assert r["tight"]["estimator"] == "iwae-k=100"
    ref = evaluate_run(out / "vae", estimator="iwae", samples=100, progress=False)
    assert r["tight"]["value"] == pytest.approx(ref["bits_per_dim"], abs=1e-9)
    assert r["tight"]["value"] < r["value"]  # IWAE-1000 is tighter than the one-draw ELBO
    assert r["value"] - r["tight"]["value"] < 5 * math.hypot(r["stderr"], 0.05)


def test_training_facts_are_those_of_metrics_csv_and_the_model(tiny_comparison):
    out, result = tiny_comparison
    for name, steps in (("independent", 40), ("vae", 30)):
        r = _records(result)[name]
        last = metrics_io.read(out / name / "metrics.csv")[-1]
        assert r["steps"] == int(last["step"]) == steps
        assert r["wall_seconds"] == pytest.approx(float(last["time"]))
        assert r["examples_per_s"] == pytest.approx(steps * 128 / float(last["time"]))
        model = lowerbound.load(out / name)
        assert r["parameters"] == sum(p.numel() for p in model.parameters())
    assert _records(result)["categorical-mixture"]["steps"] == 0


def test_json_markdown_and_html_hold_one_row_per_family(tiny_comparison):
    out, result = tiny_comparison
    saved = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in saved["runs"]] == ["independent", "categorical-mixture", "vae"]
    assert saved["runs"] == json.loads(json.dumps(result["runs"]))
    for r in saved["runs"]:
        for key in ("family", "value", "stderr", "estimator", "exact", "terms", "parameters",
                    "examples_per_s", "wall_seconds", "steps", "sample_metrics"):
            assert key in r
    md = (out / "compare.md").read_text()
    for r in saved["runs"]:
        assert f"| {r['name']} | {r['value']:.4f} | {r['stderr']:.4f} |" in md
    page = (out / "compare.html").read_text()
    assert page.count("<tr>") == 1 + 3 and "http" not in page.replace("http-equiv", "")
    assert page.count("data:image/png;base64,") == 2 + 3  # bars, curves, three sample grids


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(tiny_comparison, tmp_path):
    out, first = tiny_comparison
    before = {n: (out / n / "metrics.csv").stat().st_mtime_ns for n in ("independent", "vae")}
    (out / "vae" / "report.md").unlink()  # as if killed between training and its report
    again = compare(tiny_config(out, tight=False))
    assert (out / "vae" / "report.md").is_file()
    assert (out / "independent" / "metrics.csv").stat().st_mtime_ns == before["independent"]
    for a, b in zip(first["runs"], again["runs"]):
        assert a["steps"] == b["steps"]
        if a["name"] != "vae":
            assert a["value"] == b["value"]  # cached score of the same weights


def test_seeds_give_mean_and_stderr_across_seeds():
    rows = [{"name": "m", "family": "m", "value": v, "stderr": s, "terms": {"a": v}, "seed": i,
             "run_dir": f"d{i}", "tight": None, "steps": 10, "wall_seconds": 1.0, "examples_per_s": 5.0}
            for i, (v, s) in enumerate([(2.0, 0.1), (2.3, 0.2), (2.6, 0.3)])]
    row = aggregate(rows)
    assert row["value"] == pytest.approx(2.3) and row["seeds"] == 3
    assert row["seed_stderr"] == pytest.approx(0.3 / math.sqrt(3))  # std 0.3 over 3 seeds
    assert row["example_stderr"] == pytest.approx(0.2)
    assert row["terms"]["a"] == pytest.approx(2.3)


def test_known_density_reports_kl_to_the_truth(tmp_path):
    cfg = CompareConfig(out=str(tmp_path / "toy"), data="toy2d:8gaussians",
                        data_options={"n_train": 2000, "n_test": 500},
                        entries=[Entry("gaussian", "gaussian")], progress=False)
    r = compare(cfg)["runs"][0]
    ds = data.load("toy2d:8gaussians", n_train=2000, n_test=500)
    model = lowerbound.load(tmp_path / "toy" / "gaussian")
    with torch.no_grad():
        kl = (ds.truth.log_prob(ds.test).double() + model.bound(ds.test).nats.double()).mean().item()
    assert r["metric"] == "KL to truth (nats)"
    assert r["value"] == pytest.approx(kl, abs=1e-6) and r["value"] > 0


def test_sample_metrics_come_from_the_eval_room_when_it_has_them(tmp_path, monkeypatch):
    import lowerbound.eval as evaluation

    seen = {}

    def fake_quality(samples, dataset, split="test"):
        seen["shape"], seen["split"] = tuple(samples.shape), split
        return {"mean_level": float(samples.float().mean())}

    monkeypatch.setattr(evaluation, "sample_quality", fake_quality, raising=False)
    cfg = CompareConfig(out=str(tmp_path / "s"), entries=[Entry("categorical", "categorical")], sample_n=20,
                        progress=False)
    r = compare(cfg)["runs"][0]
    assert seen == {"shape": (20, 1, 8, 8), "split": "test"}
    assert r["sample_metrics"]["mean_level"] == pytest.approx(seen and r["sample_metrics"]["mean_level"])
    assert "mean_level" in (tmp_path / "s" / "compare.md").read_text()


def test_sample_metrics_are_those_of_the_eval_room_on_the_runs_samples(tiny_comparison):
    from lowerbound.eval import sample_quality
    from lowerbound.train.rundir import draw

    out, result = tiny_comparison
    r = _records(result)["vae"]
    ref = sample_quality(draw(lowerbound.load(out / "vae"), 64), data.load("digits"), split="test")
    assert r["sample_metrics"]["frechet_distance"] == pytest.approx(ref["frechet_distance"], rel=1e-9)
    assert r["sample_metrics"]["n_samples"] == 64
    assert f"FD {ref['frechet_distance']:.3g}" in (out / "compare.md").read_text()


def test_a_run_directory_of_another_family_is_refused(tiny_comparison, tmp_path):
    out, _ = tiny_comparison
    cfg = CompareConfig(out=str(out), entries=[Entry("vae", "categorical")], progress=False)
    with pytest.raises(UserError, match="holds 'vae'"):
        compare(cfg)


def test_families_all_leaves_out_what_cannot_model_the_data():
    names = [e.family for e in entries_for("all", "toy2d:8gaussians", {"n_train": 100, "n_test": 100})]
    assert "categorical" not in names and "gaussian" in names
    with pytest.raises(UserError, match="Unknown model family"):
        entries_for("vae,nonsense", "digits")


def test_cli_refuses_bad_input_with_one_sentence(tmp_path, capsys):
    from lowerbound.cli import main

    for args in (["--minutes", "0"], ["--families", "nonsense"], ["--runs", str(tmp_path)], ["--seeds", "0"]):
        assert main(["compare", "--out", str(tmp_path / "c"), "--families", "none", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lowerbound: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
    p = subprocess.run([sys.executable, "-m", "lowerbound", "compare", "--out", str(tmp_path / "c"),
                        "--families", "none"], capture_output=True, text=True, env=subprocess_env())
    assert p.returncode == 2 and "Nothing to compare" in p.stderr


def test_seeds_train_one_run_directory_each_and_the_row_spreads_across_them(tmp_path):
    cfg = CompareConfig(out=str(tmp_path / "s"), entries=[Entry("categorical", "categorical")], seeds=2,
                        sample_n=0, progress=False)
    result = compare(cfg)
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.name.startswith("categorical")) == \
        ["categorical-seed0", "categorical-seed1"]
    values = [r["value"] for r in result["runs"]]
    row = result["entries"][0]
    assert row["seeds"] == 2 and row["value"] == pytest.approx(sum(values) / 2)
    assert row["seed_stderr"] == pytest.approx(abs(values[0] - values[1]) / 2)  # std of 2 / sqrt(2)
    assert f"| {row['seed_stderr']:.4f} |" in (tmp_path / "s" / "compare.md").read_text()
