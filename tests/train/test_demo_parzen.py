"""`lowerbound demo parzen` (Theis et al. 2016): the Parzen window against its closed form and its
normalization, and the demo's lesson: k-means centroids first by Parzen, last by the bound."""

import json
import math

import pytest
import torch
from PIL import Image

from lowerbound.cli import main
from lowerbound.train.demos.parzen import parzen_log_density


def test_parzen_window_of_one_sample_is_a_gaussian():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1, 3, generator=g, dtype=torch.float64)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    ref = torch.distributions.Normal(s[0], 0.7).log_prob(x).sum(1)
    assert torch.allclose(parzen_log_density(s, x, 0.7), ref, atol=1e-12)


def test_parzen_window_integrates_to_one():
    samples = torch.tensor([[-1.0], [0.3], [2.0]], dtype=torch.float64)
    grid = torch.linspace(-8, 10, 20001, dtype=torch.float64).unsqueeze(1)
    density = parzen_log_density(samples, grid, 0.4).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-9)


def test_demo_parzen_ranks_centroids_first_and_the_bound_last(tmp_path, capsys):
    png = tmp_path / "parzen.png"
    assert main(["demo", "parzen", "--n", "100", "--bandwidths", "15", "-o", str(png), "--json",
                 "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["parzen_ranks_kmeans_first"] and res["bound_ranks_kmeans_last"]
    d = res["parzen_kmeans_minus_true"]
    assert d["value"] > 3 * d["stderr"]  # not a tie: the window really prefers the centroids
    km, em = res["models"]["k-means"], res["models"]["EM mixture"]
    assert km["bound"]["bits_per_dim"] == "inf" and km["bound"]["test_images_matched"] == 0
    assert 1.5 < em["bound"]["bits_per_dim"] < 3.0 and math.isfinite(em["parzen"]["nats"])
    assert Image.open(png).size[0] > 300


def test_demo_parzen_refuses_bad_sizes(capsys):
    assert main(["demo", "parzen", "--n", "5000"]) == 2
    assert "between 2 and 1000" in capsys.readouterr().err
