"""`lowerbound demo mc` against theory: 95% intervals cover within binomial error of 0.95, the error falls
as n^-1/2 with the size sqrt(Var f / n) = sqrt(2 / n), and importance sampling's per-draw variance for
P(X > 4) matches its closed form e^16 Phi(-8) - p^2."""

import io
import json
import math

import pytest
import torch

from lowerbound.cli import main
from lowerbound.errors import UserError
from lowerbound.train.demos.mc import MCDemoConfig, run_mc_demo


@pytest.fixture(scope="module")
def res():
    cfg = MCDemoConfig(max_exponent=4, repeats=200, clt_from=1000, rare_samples=20_000, seed=5)
    return run_mc_demo(cfg, None, progress=False, out=io.StringIO())


def test_coverage_is_95_percent_within_binomial_error(res):
    assert res["coverage_trials"] == 400  # n = 1000 and 10000, 200 runs each
    assert abs(res["coverage"] - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 400)


def test_error_falls_as_one_over_root_n_with_the_right_size(res):
    assert res["slope"] == pytest.approx(-0.5, abs=0.06)
    for row in res["table"]:
        theory = math.sqrt(2 / row["n"])  # Var X^2 = E X^4 - 1 = 2
        # the rmse of 200 runs is within ~6% (1 sd) of the truth at n = 10, less beyond; the reported stderr
        # averaged over runs is within ~0.5% at n >= 1000 (its bias is -Var(s^2) / 8 sigma^4 ~ -0.2%)
        assert row["rmse"] == pytest.approx(theory, rel=0.2)
        if row["n"] >= 1000:
            assert row["mean_stderr"] == pytest.approx(theory, rel=0.02)
        assert row["lower"] == pytest.approx(row["estimate"] - 1.96 * row["stderr"])


def test_importance_sampling_matches_its_closed_form_variance(res):
    r = res["rare_event"]
    p = torch.special.ndtr(torch.tensor(-4.0, dtype=torch.float64)).item()
    assert r["truth"] == pytest.approx(3.167124183e-5, rel=1e-8)
    exact = math.exp(16) * torch.special.ndtr(torch.tensor(-8.0, dtype=torch.float64)).item() - p * p
    assert r["importance"]["variance_exact"] == pytest.approx(exact, rel=1e-12)
    assert r["importance"]["variance"] == pytest.approx(exact, rel=0.15)
    assert abs(r["importance"]["estimate"] - p) <= 4 * r["importance"]["stderr"]
    assert r["plain"]["variance_exact"] / exact > 5000  # the variance drop


def test_cli_json_and_a_bad_option(tmp_path, capsys):
    png = tmp_path / "mc.png"
    assert main(["demo", "mc", "--max-exponent", "2", "--repeats", "20", "--clt-from", "10", "--rare-samples",
                 "100", "-o", str(png), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"coverage", "slope", "table"} <= set(out) and len(out["table"]) == 2
    assert png.stat().st_size > 10_000
    with pytest.raises(UserError, match="clt-from"):
        MCDemoConfig(max_exponent=2, clt_from=1000)
