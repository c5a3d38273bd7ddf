"""`lowerbound data`: the listing, a description with a PNG, and exit status 2 with nothing written."""

import numpy as np
from PIL import Image

from lowerbound.cli import main


def test_list(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "17 levels" in out and "1437 train / 360 test" in out
    assert "toy2d" in out and "mnist" in out and "cifar10" in out


def test_describe_digits_and_write_grid(tmp_path, capsys):
    png = tmp_path / "digits.png"
    assert main(["data", "digits", "--png", str(png), "--n", "16"]) == 0
    out = capsys.readouterr().out
    assert "1437 train, 360 test, shape (1, 8, 8) (D = 64), 17 levels" in out
    assert Image.open(png).size == (8 * (4 * 10 + 2),) * 2  # 4x4 tiles of 8+2 pixels, upscaled x8


def test_scatter_for_toy_set(tmp_path, capsys):
    png = tmp_path / "moons.png"
    assert main(["data", "toy2d:checkerboard", "--option", "n_train=300", "--option", "n_test=10",
                 "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "300 train, 10 test" in out and "entropy Estimate(3.46574, exact)" in out
    assert Image.open(png).format == "PNG"


def test_bad_name_exits_2_and_writes_nothing(tmp_path, capsys):
    png = tmp_path / "x.png"
    assert main(["data", "no-such-set", "--png", str(png)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lowerbound: error: Unknown data set 'no-such-set'") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_broken_file_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0, 1], [2, 9]]))
    png = tmp_path / "out.png"
    assert main(["data", f"npy:{bad}", "--levels", "4", "--png", str(png)]) == 2
    assert "holds values outside 0..3" in capsys.readouterr().err
    flat = tmp_path / "flat.npy"  # integer vectors: neither images nor 2-D points, nothing to draw
    np.save(flat, np.zeros((10, 5), dtype=np.int64))
    assert main(["data", f"npy:{flat}", "--levels", "10", "--png", str(png)]) == 2
    assert "Cannot draw" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "flat.npy"]


def test_missing_mnist_exits_2(tmp_path, capsys):
    assert main(["data", "mnist", "--root", str(tmp_path)]) == 2
    assert "mnist needs train-images-idx3-ubyte" in capsys.readouterr().err
