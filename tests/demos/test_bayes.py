"""`lowerbound demo bayes` against closed forms: the diagnostic test's posterior is 1/6 exactly, and the
coin's conjugate posterior and evidence agree with Bayes rule on a grid, with the chain rule of the
predictives, and with numerical integration by scipy."""

import io
import json
import math

import pytest
from scipy import integrate, stats

from lowerbound.cli import main
from lowerbound.train.demos.bayes import BayesDemoConfig, coin, diagnostic, run_bayes_demo


@pytest.fixture(scope="module")
def res():
    cfg = BayesDemoConfig(flips=30, grid=1000, seed=2)
    return run_bayes_demo(cfg, None, progress=False, out=io.StringIO())


def test_diagnostic_posterior_is_one_sixth(res):
    assert res["posterior"] == pytest.approx(1 / 6, rel=1e-13)
    assert res["evidence"] == pytest.approx(0.01 * 0.99 + 0.99 * 0.05, rel=1e-13)
    assert res["diagnostic"]["posterior_exact"] == "1/6"
    assert res["diagnostic"]["evidence_exact"] == "297/5000"
    # a second case by hand: prior 1/2, sensitivity 0.9, false positives 0.1 -> posterior 0.9
    other = diagnostic(BayesDemoConfig(prior=0.5, sensitivity=0.9, false_positive_rate=0.1))
    assert other["posterior"] == pytest.approx(0.9, rel=1e-13) and other["posterior_exact"] == "9/10"


def test_coin_posterior_and_evidence_agree_three_ways(res):
    c = res["coin"]
    heads = sum(c["x"])
    assert c["heads"] == heads and c["posterior_beta"] == [2 + heads, 2 + 30 - heads]
    assert c["log_evidence_sequential"] == pytest.approx(c["log_evidence"], abs=1e-10)  # chain rule, exact
    assert c["log_evidence_grid"] == pytest.approx(c["log_evidence"], abs=1e-4)  # midpoint rule, 1000 cells
    assert c["max_density_gap"] < 1e-3
    steps = c["steps"]
    assert all(a == pytest.approx(b, abs=1e-10) for a, b in zip(steps["closed"], steps["sequential"]))


def test_closed_form_evidence_matches_numerical_integration():
    c = coin(BayesDemoConfig(flips=7, prior_a=1.5, prior_b=3.0, seed=4))
    h, t = c["heads"], 7 - c["heads"]
    value, _ = integrate.quad(lambda th: th**h * (1 - th) ** t * stats.beta(1.5, 3.0).pdf(th), 0, 1,
                              epsabs=1e-14)
    assert c["log_evidence"] == pytest.approx(math.log(value), abs=1e-8)


def test_cli_json(tmp_path, capsys):
    png = tmp_path / "b.png"
    assert main(["demo", "bayes", "--flips", "5", "--grid", "100", "-o", str(png), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["posterior"] == pytest.approx(1 / 6) and out["evidence"] == pytest.approx(0.0594)
    assert png.stat().st_size > 10_000
    assert main(["demo", "bayes", "--prior", "1.5"]) == 2
    assert "prior must be a probability" in capsys.readouterr().err
