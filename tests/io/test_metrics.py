"""metrics.csv: floats round-trip exactly, resume truncation drops later and half-written rows."""

from lowerbound.io import metrics


def test_rows_round_trip_exactly(tmp_path):
    log = metrics.MetricsLog(tmp_path / "m.csv")
    rows = [{"step": s, "loss_bpd": 1.0 / (s + 3), "valid_bpd": None if s % 2 else 0.1 * s} for s in range(5)]
    for r in rows:
        log.write(r)
    back = metrics.read(tmp_path / "m.csv")
    assert [float(r["loss_bpd"]) for r in back] == [r["loss_bpd"] for r in rows]
    assert metrics.column(back, "valid_bpd") == ([0, 2, 4], [0.0, 0.2, 0.4])
    # a reopened log keeps the header
    again = metrics.MetricsLog(tmp_path / "m.csv")
    assert again.columns == ["step", "loss_bpd", "valid_bpd"]


def test_truncate_after_drops_later_and_partial_rows(tmp_path):
    path = tmp_path / "m.csv"
    log = metrics.MetricsLog(path)
    for s in (10, 20, 30):
        log.write({"step": s, "loss": float(s)})
    with open(path, "a") as f:
        f.write("40,4")  # killed mid-row
    assert [r["step"] for r in metrics.read(path)] == ["10", "20", "30"]
    log = metrics.MetricsLog(path)
    log.truncate_after(20)
    log.write({"step": 30, "loss": 3.5})
    got = [(r["step"], r["loss"]) for r in metrics.read(path)]
    assert got == [("10", "10.0"), ("20", "20.0"), ("30", "3.5")]
