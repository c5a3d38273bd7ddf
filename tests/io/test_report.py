"""report.md: the bound table shows every split, its interval, estimator and terms."""

from lowerbound.io import report


def test_bound_table_and_render(tmp_path):
    results = {
        "train": {"bits_per_dim": 1.5, "stderr": 0.01, "interval": [1.48, 1.52], "estimator": "elbo",
                  "exact": False, "terms": {"reconstruction": {"value": 1.2, "stderr": 0.01}, "kl": 0.3}},
        "test": {"bits_per_dim": 2.25, "stderr": 0.02, "interval": [2.21, 2.29], "estimator": "elbo",
                 "exact": False, "terms": {"reconstruction": 1.9, "kl": 0.35}},
    }
    lines = report.bound_table(results)
    assert lines[0] == "| split | bits/dim | stderr | 95% interval | estimator | reconstruction | kl |"
    assert lines[3] == "| test | 2.2500 | 0.0200 | [2.2100, 2.2900] | elbo (upper bound) | 1.9000 | 0.3500 |"
    path = report.write(tmp_path / "report.md", {"title": "vae on digits", "facts": {"steps": 10},
                                                 "results": results, "images": {"Samples": "s.png"},
                                                 "diagnostics": {"active units": 7}})
    text = path.read_text()
    assert text.startswith("# vae on digits") and "![Samples](s.png)" in text and "active units: 7" in text
    assert "| train | 1.5000 |" in text


def test_extras_and_kl_to_truth_columns():
    results = {
        "valid": {"nats": 2.9, "stderr": 0.08, "interval": [2.74, 3.06], "estimator": "iwae-k=100",
                  "exact": False, "terms": {"nll": {"value": 2.9, "stderr": 0.08}},
                  "extras": {"gap": {"value": 0.25, "stderr": 0.01}},
                  "kl_to_truth": {"value": 0.0134, "stderr": 0.0125, "unit": "nats"}},
        "test": {"nats": 2.8666, "stderr": 0.0326, "interval": [2.8027, 2.9305], "estimator": "iwae-k=100",
                 "exact": False, "terms": {"nll": {"value": 2.8666, "stderr": 0.0326}}, "extras": {},
                 "kl_to_truth": None},
    }
    lines = report.bound_table(results)
    assert lines[0].endswith("| nll | gap | KL to truth (nats) |")
    assert lines[2].endswith("| 2.9000 | 0.2500 ± 0.0100 | 0.0134 ± 0.0125 |")
    assert lines[3].endswith("| 2.8666 | - | - |")
    plain = report.bound_table({"test": {**results["test"], "kl_to_truth": None}})
    assert "KL" not in plain[0] and plain[0].endswith("| nll |")
