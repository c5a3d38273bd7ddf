"""`lowerbound demo em` against the identity log p(x) = ELBO + KL(q || p(z | x)): the ELBO never falls, the
gap is zero after every E-step (q is the exact posterior) and equals the KL after every M-step."""

import io
import json

import pytest

from lowerbound.cli import main
from lowerbound.train.demos.em import EMDemoConfig, run_em_demo


@pytest.fixture(scope="module")
def res():
    cfg = EMDemoConfig(components=5, iterations=8, examples=300, seed=1)
    return run_em_demo(cfg, None, progress=False, out=io.StringIO())


def test_elbo_rises_at_every_half_step(res):
    elbos = [p["elbo"] for p in res["steps"]]
    assert len(elbos) == 1 + 2 * 8 and [p["kind"] for p in res["steps"][:3]] == ["start", "E", "M"]
    assert all(b - a >= -1e-12 for a, b in zip(elbos, elbos[1:]))
    assert elbos[-1] - elbos[0] > 0.5  # and it really climbs (0.78 nats here)


def test_gap_is_zero_after_each_e_step_and_the_kl_after_each_m_step(res):
    assert all(abs(g) <= 1e-9 for g in res["gap_after_e"])
    assert res["gap_after_m"][0] > 1e-3  # the M-step moves theta away from q's posterior
    for p in res["steps"]:
        assert p["gap"] == pytest.approx(p["kl_to_posterior"], abs=1e-9)
        assert p["kl_to_posterior"] >= -1e-12


def test_each_e_step_rises_by_exactly_the_gap_the_m_step_opened(res):
    pts = res["steps"]
    for m, e in zip(pts[2::2], pts[3::2]):
        assert m["kind"] == "M" and e["kind"] == "E"
        assert e["elbo"] - m["elbo"] == pytest.approx(m["gap"], abs=1e-9)
        assert e["log_evidence"] == pytest.approx(m["log_evidence"], abs=1e-9)  # same theta


def test_cli_json(tmp_path, capsys):
    png = tmp_path / "em.png"
    argv = ["demo", "em", "--components", "3", "--iterations", "3", "--examples", "60", "-o", str(png),
            "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["gap_after_e"]) == 3 and png.stat().st_size > 10_000
    assert main(["demo", "em", "--examples", "5000"]) == 2
    assert "at most 1437" in capsys.readouterr().err
